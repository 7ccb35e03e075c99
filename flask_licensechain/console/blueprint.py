"""The console blueprint and what every console request goes through.

Before each view: the session is read from the store (``sessions.load``) and the CSRF
token of every POST/PUT/PATCH/DELETE is checked (flask-wtf's ``CSRFProtect.protect``,
called here only: the JSON ``/v1`` API never asks for a CSRF token). After it: the session
cookie and the security headers: the console's own (a strict Content-Security-Policy
without inline script, ``frame-ancestors 'none'``; ``Referrer-Policy: same-origin``, which
flask-wtf's CSRF check over HTTPS needs; ``no-store``), then the app-wide ones of
``monitoring/headers.py`` (``nosniff``, ``DENY``, HSTS over HTTPS), even where the app has
turned those off for its own pages. Errors inside the console
render an HTML page; the app's JSON error handler keeps everything else.

Text the store cannot hold is refused (400) before any view: a NUL (PostgreSQL refuses it
in text) or a lone UTF-16 surrogate (a JSON ``\\ud800`` escape; no UTF-8 encoding exists),
in a form field, a query or path argument, or any string of a JSON body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from flask import Blueprint, Response, abort, g, render_template, request
from flask_wtf.csrf import CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException

from ..monitoring.headers import security_headers_hook
from ..state import get_issuer_state
from . import sessions
from .auth import SIGNED_KEY, current_user, signed, user_can
from .roles import role_allows
from .state import console_state

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: a NUL or a lone surrogate: text that neither UTF-8 nor PostgreSQL can store
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
#: JSON bodies larger than this are left to the view (which answers 413)
_JSON_SCAN_MAX: Final = 1024 * 1024

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
    if not _storable_request():
        abort(400, "The request holds characters that cannot be stored (NUL or a lone surrogate).")
    setattr(g, SIGNED_KEY, sessions.load(console_state()))
    csrf.protect()


def _storable(value: object) -> bool:
    """Whether every string in ``value`` (a JSON value, nested) is storable text."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def _storable_request() -> bool:
    texts = [
        t for pairs in (request.args, request.form) for kv in pairs.items(multi=True) for t in kv
    ]
    texts += [v for v in (request.view_args or {}).values() if isinstance(v, str)]
    if not all(_storable(t) for t in texts):
        return False
    if request.is_json and (request.content_length or 0) <= _JSON_SCAN_MAX:
        return _storable(request.get_json(silent=True))
    return True


@bp.after_request
def _finish(response: Response) -> Response:
    sessions.write_cookie(response)
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.endpoint != "console.static":
        headers["Cache-Control"] = "no-store"
    return security_headers_hook(get_issuer_state().settings)(response)


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


@bp.route("/<path:unknown>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def _unknown(unknown: str) -> Any:
    """Any other path under the console (or a method its route does not take): the
    console's HTML 404 page, not the API's JSON body (Werkzeug tries this rule last)."""
    abort(404)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    return render_template("console/error.html", code=code, error=error), code
