"""The console blueprint and what every console request goes through.

Before each view: the session is read from the store (``sessions.load``) and the CSRF
token of every POST/PUT/PATCH/DELETE is checked (flask-wtf's ``CSRFProtect.protect``,
called here only: the JSON ``/v1`` API never asks for a CSRF token). After it: the session
cookie and the security headers (a strict Content-Security-Policy without inline script,
``frame-ancestors 'none'``; HSTS over HTTPS; ``no-store``). Errors inside the console
render an HTML page; the app's JSON error handler keeps everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from flask import Blueprint, Response, g, render_template, request
from flask_wtf.csrf import CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException

from . import sessions
from .auth import SIGNED_KEY, current_user, signed, user_can
from .roles import role_allows
from .state import console_state

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS: Final = "max-age=31536000; includeSubDomains"

bp = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

csrf = CSRFProtect()


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str
    scope: str | None


#: the navigation bar, in order; pages add theirs with ``add_nav``
NAV: list[NavItem] = []


def add_nav(label: str, endpoint: str, scope: str | None = None) -> None:
    """Add a link to the navigation bar, shown only to roles that grant ``scope``."""
    NAV.append(NavItem(label, endpoint, scope))


def _visible_nav() -> list[NavItem]:
    user = current_user()
    if user is None:
        return []
    return [item for item in NAV if item.scope is None or role_allows(user.role, item.scope)]


@bp.before_request
def _load_session() -> None:
    if request.endpoint == "console.static":
        return  # stylesheet and script: no session, nothing to protect
    setattr(g, SIGNED_KEY, sessions.load(console_state()))
    csrf.protect()


@bp.after_request
def _finish(response: Response) -> Response:
    sessions.write_cookie(response)
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.endpoint != "console.static":
        headers["Cache-Control"] = "no-store"
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


@bp.app_template_global("lc_user_can")
def _template_user_can(scope: str) -> bool:
    return user_can(scope)


@bp.context_processor
def _template_context() -> dict[str, Any]:
    return {
        "csrf_token": generate_csrf,
        "console_user": current_user(),
        "console_signed": signed(),
        "console_nav": _visible_nav(),
        "console_sso": console_state().sso is not None,
        "console_base": request.script_root + console_state().settings.console_path.rstrip("/"),
    }


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    return render_template("console/error.html", code=code, error=error), code
