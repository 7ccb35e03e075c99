"""Who is signed in, and the decorators that guard console views.

- ``current_user()``: the signed-in ``ConsoleUser`` (None outside a full session).
- ``console_actor()``: that user as the service layer's ``Actor`` (``store.changes``).
- ``@login_required``: a fully signed-in user (password and second factor), else a
  redirect to the sign-in page (or to the second-factor step that is pending).
- ``@requires_scope("licenses:write")``: also the scope, from the user's role
  (``roles.ROLE_SCOPES``); else 403.
- ``@requires_recent_mfa``: also a second-factor check within
  ``LICENSECHAIN_CONSOLE_MFA_MAX_AGE`` seconds; else a redirect to the re-check page, which
  comes back here (a GET) or to the page the form was on (a POST) afterwards. Adding,
  enrolling or removing a second factor is such an action too (else a stolen session
  could plant a passkey: a lasting, password-free way in; ASVS 4.0 V3.7.1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast
from urllib.parse import unquote, urlsplit

from flask import abort, flash, g, redirect, request, url_for

from ..client_ip import client_ip
from ..core.gate import environ_request_id
from ..store.changes import Actor
from . import sessions
from .repository import ConsoleSession, ConsoleUser
from .roles import role_allows
from .sessions import STAGE_ENROL, STAGE_FULL, Signed
from .state import console_state

F = TypeVar("F", bound=Callable[..., Any])

SIGNED_KEY: Final = "_lc_console_signed"


def signed() -> Signed | None:
    """The request's valid session and user (any stage). The console blueprint loads it
    before its views; elsewhere (a view of the host app using these decorators) it is
    loaded here, once per request."""
    if SIGNED_KEY not in g:
        setattr(g, SIGNED_KEY, sessions.load(console_state()))
    value: Signed | None = g.get(SIGNED_KEY)
    return value


def current_user() -> ConsoleUser | None:
    """The fully signed-in user of this request, or None."""
    found = signed()
    return found.user if found is not None and found.session.stage == STAGE_FULL else None


def current_session() -> ConsoleSession | None:
    found = signed()
    return found.session if found is not None and found.session.stage == STAGE_FULL else None


def console_actor() -> Actor:
    """The signed-in user as the service layer's ``Actor`` (kind ``console``), with the
    request's IP and user agent (personal data: the audit log keeps them apart).

    :raises RuntimeError: nobody is fully signed in (guard the view with ``@login_required``).
    """
    user = current_user()
    if user is None:
        raise RuntimeError("console_actor() needs a signed-in user (@login_required)")
    return Actor(
        kind="console",
        id=user.id,
        name=user.display_name,
        request_id=environ_request_id(request.environ),
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent"),
    )


def user_can(scope: str) -> bool:
    """Whether the signed-in user's role grants ``scope`` (templates use it to hide what
    the role may not do)."""
    user = current_user()
    return user is not None and role_allows(user.role, scope)


def user_may_access_app(app_id: str) -> bool:
    """Whether the signed-in user may act on the app ``app_id`` (an empty restriction is
    every app)."""
    user = current_user()
    return user is not None and (not user.app_ids or app_id in user.app_ids)


def safe_next(target: object) -> str | None:
    """``target`` when it is a string naming a path inside the console (no scheme, no
    host, no dot segment even percent-encoded), else None: a ``next`` parameter must not
    redirect elsewhere."""
    if not isinstance(target, str) or not target.startswith("/"):
        return None
    if target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    segments = set(unquote(parts.path).split("/"))
    if parts.scheme or parts.netloc or {".", ".."} & segments:
        return None  # a dot segment would walk out of the console once the browser resolves it
    prefix = console_state().settings.console_path.rstrip("/") + "/"
    return target if (parts.path + "/").startswith(prefix) or parts.path == prefix[:-1] else None


def _login_redirect() -> Any:
    found = signed()
    if found is not None and found.session.stage == STAGE_ENROL:
        return redirect(url_for("console.enrol"))
    if found is not None:
        return redirect(url_for("console.login_mfa"))
    target = _here() if request.method == "GET" else None
    return redirect(url_for("console.login", next=safe_next(target)))


def _here() -> str:
    """The request's path and query (Werkzeug's ``full_path`` ends in ``?`` without one)."""
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def login_required(view: F) -> F:
    """Only a fully signed-in user reaches ``view``."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return _login_redirect()
        return view(*args, **kwargs)

    return cast(F, wrapper)


def requires_scope(scope: str) -> Callable[[F], F]:
    """Only a signed-in user whose role grants ``scope`` reaches the view; others get 403
    (and a signed-out visitor the sign-in page)."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return _login_redirect()
            if not role_allows(user.role, scope):
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def mfa_is_recent() -> bool:
    session = current_session()
    if session is None or session.mfa_at is None:
        return False
    state = console_state()
    return state.clock() - session.mfa_at < state.mfa_max_age


def reauth_redirect() -> Any:
    """A redirect to the re-check page, which comes back here (a GET) or to the page the
    form was on (a POST)."""
    if request.method == "GET":
        back = safe_next(_here())
    else:
        back = safe_next(urlsplit(request.referrer or "").path or None)
        flash("Confirm it is you, then submit the form again.", "info")
    return redirect(url_for("console.reauth", next=back))


def requires_recent_mfa(view: F) -> F:
    """Only a signed-in user whose last second-factor check is recent reaches ``view``
    (creating or rotating API keys, rotating the signing key, changing roles...)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return _login_redirect()
        if not mfa_is_recent():
            return reauth_redirect()
        return view(*args, **kwargs)

    return cast(F, wrapper)
