"""Console users: create them with a one-time setup link, change role, disable, unlock.

The CLI (``flask licensechain users ...``) and the console's Users page both call these;
each change is an audit event. A role change or a disabling revokes the user's sessions,
so the person signs in again (a new session id at every change of privilege).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

from ..core.errors import InvalidRequest, NotFound
from . import throttle
from .audit import audit_event
from .repository import ConsoleUser
from .roles import check_role
from .state import ConsoleState

SETUP_LINK_LIFETIME: Final = timedelta(hours=24)
_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def check_email(email: str) -> str:
    """The lower-cased address; ``InvalidRequest`` unless it looks like ``local@domain``."""
    normalized = throttle.normalize_email(email)
    if not _EMAIL.match(normalized):
        raise InvalidRequest(f"Not an email address: {email!r}.")
    return normalized


def setup_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_setup_token(state: ConsoleState, user: ConsoleUser, *, actor: str | None = None) -> str:
    """A one-time setup token for ``user``, valid ``SETUP_LINK_LIFETIME``; only its hash is
    stored. Audited when ``actor`` is given (a new link for an existing user)."""
    token = secrets.token_urlsafe(32)
    expires = state.clock() + SETUP_LINK_LIFETIME
    state.repo.add_setup_token(setup_token_hash(token), user.id, expires)
    if actor is not None:
        audit_event(state.store, "console.setup_link_issued", actor=actor, target=f"user:{user.id}")
    return token


def console_base_url(state: ConsoleState) -> str | None:
    """``LICENSECHAIN_CONSOLE_URL``, else the issuer's origin plus the console path, else
    None (then links are printed as paths)."""
    settings = state.settings
    if settings.console_url:
        return settings.console_url.rstrip("/")
    if settings.issuer:
        parts = urlsplit(settings.issuer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}{settings.console_path.rstrip('/')}"
    return None


def setup_link(state: ConsoleState, token: str, base_url: str | None = None) -> str:
    base = (base_url.rstrip("/") if base_url else None) or console_base_url(state)
    path = f"/setup/{token}"
    return f"{base}{path}" if base else state.settings.console_path.rstrip("/") + path


def create_user(
    state: ConsoleState,
    *,
    email: str,
    role: str,
    display_name: str | None = None,
    app_ids: Iterable[str] = (),
    actor: str,
) -> tuple[ConsoleUser, str]:
    """A new user and its setup token. ``InvalidRequest`` for a bad email or role,
    ``Conflict`` when the email is taken."""
    try:
        role = check_role(role)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    address = check_email(email)
    name = (display_name or "").strip() or address.split("@", 1)[0]
    user = state.repo.create_user(
        email=address, display_name=name[:200], role=role, app_ids=app_ids, now=state.clock()
    )
    token = new_setup_token(state, user)
    audit_event(
        state.store,
        "console.user_created",
        actor=actor,
        target=f"user:{user.id}",
        role=role,
        email=address,
    )
    return user, token


def find_user(state: ConsoleState, ident: str) -> ConsoleUser:
    """A user by id or email; ``NotFound`` otherwise."""
    user = state.repo.get_user(ident) or state.repo.find_user_by_email(
        throttle.normalize_email(ident)
    )
    if user is None:
        raise NotFound("Console user not found.")
    return user


def set_role(state: ConsoleState, user: ConsoleUser, role: str, *, actor: str) -> ConsoleUser:
    """Change a user's role; the user's sessions end. Audited."""
    try:
        role = check_role(role)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    now = state.clock()
    updated = state.repo.update_user(user.id, now=now, role=role)
    state.repo.revoke_user_sessions(user.id, now)
    audit_event(
        state.store,
        "console.user_role_changed",
        actor=actor,
        target=f"user:{user.id}",
        old=user.role,
        new=role,
    )
    return updated


def set_disabled(
    state: ConsoleState, user: ConsoleUser, disabled: bool, *, actor: str
) -> ConsoleUser:
    """Disable (sessions end) or enable a user. Audited."""
    now = state.clock()
    updated = state.repo.update_user(user.id, now=now, disabled=disabled)
    if disabled:
        state.repo.revoke_user_sessions(user.id, now)
    audit_event(
        state.store,
        "console.user_disabled" if disabled else "console.user_enabled",
        actor=actor,
        target=f"user:{user.id}",
    )
    return updated


def unlock(state: ConsoleState, user: ConsoleUser, *, actor: str) -> None:
    """Lift a sign-in lock (an owner's action, no email needed). Audited."""
    throttle.unlock(state, user, actor=actor, now=state.clock())
