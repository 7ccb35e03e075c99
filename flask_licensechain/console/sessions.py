"""Server-side console sessions: a random id in a cookie, the rest in the store.

The cookie holds 256 random bits (``secrets.token_urlsafe(32)``); the store keeps only
their SHA-256, so a copy of the database opens no session. The cookie is ``HttpOnly`` and
``SameSite=Lax``; over HTTPS it is also ``Secure`` and named with the ``__Host-`` prefix
(RFC 6265bis 4.1.3.2: host-only, path ``/``, secure). Each request reads the session from
the store, so a revocation takes effect on the next request in every worker.

A session ends when it is revoked, when it was idle longer than
``LICENSECHAIN_CONSOLE_IDLE_TIMEOUT``, when it is older than
``LICENSECHAIN_CONSOLE_ABSOLUTE_TIMEOUT``, or when its user is disabled or removed. A new id
is issued at sign-in and at every change of privilege (OWASP Session Management: renew the
id after any privilege level change), and the old one is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from flask import Response, g, request

from ..client_ip import client_ip
from ..services import users
from ..store.changes import SYSTEM
from .repository import ConsoleSession, ConsoleUser
from .state import ConsoleState

COOKIE_NAME: Final = "lc_console"
SECURE_COOKIE_NAME: Final = "__Host-lc_console"
#: stages of a session: password checked and second factor pending; a second factor must
#: be enrolled first; fully signed in
STAGE_MFA: Final = "mfa"
STAGE_ENROL: Final = "enrol"
STAGE_FULL: Final = "full"
#: ``last_seen_at`` is written at most this often per session (a write per page is waste)
_TOUCH_EVERY: Final = timedelta(seconds=15)
_USER_AGENT_MAX: Final = 400

_NEW_COOKIE: Final = "_lc_console_new_cookie"
_CLEAR_COOKIE: Final = "_lc_console_clear_cookie"


@dataclass(frozen=True)
class Signed:
    """The current request's session and its user."""

    session: ConsoleSession
    user: ConsoleUser


def hash_session_id(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def cookie_name() -> str:
    return SECURE_COOKIE_NAME if request.is_secure else COOKIE_NAME


def _raw_cookie() -> str | None:
    raw = request.cookies.get(cookie_name())
    return raw if raw and len(raw) <= 128 else None


def end_reason(
    state: ConsoleState, session: ConsoleSession, user: ConsoleUser | None, now: datetime
) -> str | None:
    """Why ``session`` is no longer valid at ``now`` (``revoked``, ``idle``, ``expired``,
    ``user_gone``, ``user_disabled``), or None while it is."""
    if session.revoked_at is not None:
        return "revoked"
    if user is None:
        return "user_gone"
    if user.disabled:
        return "user_disabled"
    if now - session.created_at >= state.absolute_timeout:
        return "expired"
    if now - session.last_seen_at >= state.idle_timeout:
        return "idle"
    return None


def load(state: ConsoleState) -> Signed | None:
    """The valid session of this request, touched; None (and the cookie cleared) otherwise."""
    raw = _raw_cookie()
    if raw is None:
        return None
    id_hash = hash_session_id(raw)
    session = state.repo.get_session(id_hash)
    if session is None:
        g.setdefault(_CLEAR_COOKIE, True)
        return None
    user = state.repo.get_user(session.user_id)
    now = state.clock()
    reason = end_reason(state, session, user, now)
    if reason is not None:
        if session.revoked_at is None:
            users.end_session(state, SYSTEM, id_hash, session.user_id, reason=reason)
        g.setdefault(_CLEAR_COOKIE, True)
        return None
    assert user is not None
    if now - session.last_seen_at >= _TOUCH_EVERY:
        state.repo.touch_session(id_hash, now)
    return Signed(session, user)


def issue(
    state: ConsoleState,
    user: ConsoleUser,
    *,
    stage: str,
    mfa_at: datetime | None,
    created_at: datetime | None = None,
) -> str:
    """Start a session for ``user`` with a new id, revoking the request's current one (no
    session fixation). ``created_at`` keeps the sign-in time across a privilege change, so
    the absolute timeout still counts from sign-in. Returns the new id's hash."""
    now = state.clock()
    revoke_current(state, now)
    # Sessions past the absolute timeout are of no use: dropped (with their IP and device).
    state.repo.delete_sessions_before(now - state.absolute_timeout)
    raw = secrets.token_urlsafe(32)
    id_hash = hash_session_id(raw)
    state.repo.create_session(
        id_hash,
        user_id=user.id,
        stage=stage,
        now=now,
        mfa_at=mfa_at,
        created_at=created_at,
        ip=client_ip()[:64],
        user_agent=(request.headers.get("User-Agent") or "")[:_USER_AGENT_MAX] or None,
    )
    setattr(g, _NEW_COOKIE, raw)
    g.pop(_CLEAR_COOKIE, None)
    return id_hash


def revoke_current(state: ConsoleState, now: datetime | None = None) -> bool:
    """Revoke the session of this request's cookie (whatever its state) and clear the
    cookie. True when a live session was revoked."""
    raw = _raw_cookie()
    g.setdefault(_CLEAR_COOKIE, True)
    if raw is None:
        return False
    return state.repo.revoke_session(hash_session_id(raw), now or state.clock())


def current_id_hash() -> str | None:
    """The id hash of the session this request carries (or was just issued)."""
    fresh = g.get(_NEW_COOKIE)
    if fresh is not None:
        return hash_session_id(fresh)
    raw = _raw_cookie()
    return None if raw is None else hash_session_id(raw)


def write_cookie(response: Response) -> Response:
    """Set or clear the session cookie as this request decided (an ``after_request``)."""
    secure = request.is_secure
    fresh = g.get(_NEW_COOKIE)
    if fresh is not None:
        response.set_cookie(
            cookie_name(), fresh, path="/", secure=secure, httponly=True, samesite="Lax"
        )
    elif g.get(_CLEAR_COOKIE) and request.cookies.get(cookie_name()) is not None:
        response.delete_cookie(
            cookie_name(), path="/", secure=secure, httponly=True, samesite="Lax"
        )
    return response
