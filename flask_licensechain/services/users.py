"""Console users and their security: every change of the admin console's own state, and the
sign-in events, each in one unit of work with its audit event (``console.*``).

The console's views and ``flask licensechain users ...`` call these; a failing audit write
fails the change (nothing is written), as for every other service (DESIGN.md: "one service
layer for every state change"). Events with no change of their own (a sign-in, a failed
attempt) are recorded in a unit too, so that they are in the audit chain or the request
fails. Personal data (e-mail addresses, display names, passkey names) goes in
``Change.personal``, never in ``data``; the client's IP and user agent ride on the
``Actor``. Targets are ``user:<id>``: the customer-erasure path finds a person's events by
them.

Actors: a signed-in person is ``Actor(kind="console", id=<user id>, name=<role>)``
(``console/actors.py`` builds it from the request); a visitor not signed in (a failed
sign-in, a lock) is ``ANONYMOUS`` with the request's address; sessions ended by a timeout are
``SYSTEM``'s.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from ..console import mfa, throttle
from ..console.people import SETUP_LINK_LIFETIME, check_email, setup_token_hash
from ..console.repository import ConsoleUser, WebAuthnCredential
from ..console.roles import check_role
from ..console.state import ConsoleState
from ..core.errors import Conflict, InvalidRequest, NotFound
from ..store import Actor, Change

#: the id of a console visitor who is not signed in (with ``kind="console"``)
ANONYMOUS_ID: Final = "anonymous"


def target_of(user: ConsoleUser | str) -> str:
    """The audit target naming a console user: ``user:<id>``."""
    return f"user:{user if isinstance(user, str) else user.id}"


def _record(
    state: ConsoleState,
    actor: Actor,
    action: str,
    user: ConsoleUser | str | None,
    data: dict[str, Any] | None = None,
    personal: dict[str, Any] | None = None,
) -> None:
    with state.store.unit_of_work(actor) as unit:
        unit.record(
            Change(
                action=action,
                target=None if user is None else target_of(user),
                data=data or {},
                personal=personal or {},
            )
        )


def record_event(
    state: ConsoleState,
    actor: Actor,
    action: str,
    user: ConsoleUser | str | None,
    **data: Any,
) -> None:
    """Record an event that changes nothing by itself (``console.sso_verified``,
    ``console.reauth``...) in the current unit of work, or in one of its own. ``data`` holds
    non-personal facts only. Raises the store's errors (``Unavailable``)."""
    _record(state, actor, action, user, data)


# -- people -------------------------------------------------------------------------------


def create_user(
    state: ConsoleState,
    actor: Actor,
    *,
    email: str,
    role: str,
    display_name: str | None = None,
    app_ids: Iterable[str] = (),
) -> tuple[ConsoleUser, str]:
    """A new user (no password, no second factor) and its one-time setup token (valid
    ``SETUP_LINK_LIFETIME``; only its hash is stored). ``console.user_created``: ``data``
    ``{"role"}``, ``personal`` ``{"email"}``. Raises ``InvalidRequest`` (email, role),
    ``Conflict`` (email taken), ``Unavailable``."""
    try:
        role = check_role(role)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    address = check_email(email)
    name = (display_name or "").strip() or address.split("@", 1)[0]
    with state.store.unit_of_work(actor):
        user = state.repo.create_user(
            email=address, display_name=name[:200], role=role, app_ids=app_ids, now=state.clock()
        )
        token = _add_setup_token(state, user)
        _record(state, actor, "console.user_created", user, {"role": role}, {"email": address})
    return user, token


def _add_setup_token(state: ConsoleState, user: ConsoleUser) -> str:
    token = secrets.token_urlsafe(32)
    state.repo.add_setup_token(
        setup_token_hash(token), user.id, state.clock() + SETUP_LINK_LIFETIME
    )
    return token


def issue_setup_link(state: ConsoleState, actor: Actor, user: ConsoleUser) -> str:
    """A new one-time setup token for an existing user (``console.setup_link_issued``)."""
    with state.store.unit_of_work(actor):
        token = _add_setup_token(state, user)
        _record(state, actor, "console.setup_link_issued", user)
    return token


def set_role(state: ConsoleState, actor: Actor, user: ConsoleUser, role: str) -> ConsoleUser:
    """Change a user's role; the user's sessions end (``console.user_role_changed``,
    ``data`` ``{"old", "new"}``). Raises ``InvalidRequest``, ``NotFound``, ``Unavailable``."""
    try:
        role = check_role(role)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    now = state.clock()
    with state.store.unit_of_work(actor):
        updated = state.repo.update_user(user.id, now=now, role=role)
        state.repo.revoke_user_sessions(user.id, now)
        _record(state, actor, "console.user_role_changed", user, {"old": user.role, "new": role})
    return updated


def set_disabled(
    state: ConsoleState, actor: Actor, user: ConsoleUser, disabled: bool
) -> ConsoleUser:
    """Disable a user (the sessions end; ``console.user_disabled``) or enable one
    (``console.user_enabled``). Raises ``NotFound``, ``Unavailable``."""
    now = state.clock()
    with state.store.unit_of_work(actor):
        updated = state.repo.update_user(user.id, now=now, disabled=disabled)
        if disabled:
            state.repo.revoke_user_sessions(user.id, now)
        action = "console.user_disabled" if disabled else "console.user_enabled"
        _record(state, actor, action, user)
    return updated


def unlock(state: ConsoleState, actor: Actor, user: ConsoleUser) -> None:
    """Lift a sign-in lock and forget the account's failures (``console.account_unlocked``)."""
    with state.store.unit_of_work(actor):
        state.repo.update_user(user.id, now=state.clock(), locked_until=None)
        state.repo.clear_failures(user.email)
        _record(state, actor, "console.account_unlocked", user)


# -- signing in ---------------------------------------------------------------------------


def login_failed(
    state: ConsoleState,
    actor: Actor,
    *,
    email: str,
    ip: str,
    user: ConsoleUser | None,
    now: datetime,
    step: str,
    attempt: int | None = None,
    **data: Any,
) -> None:
    """Count a failed ``step`` (``password``, ``second_factor``, ``passkey``, ``sso``): the
    row of ``attempt`` (``throttle.begin_attempt``) stays, or a new one is inserted
    (``console.login_failed``, ``data`` ``{"step", **data}``); at ``throttle.LOCK_AFTER``
    failures within ``throttle.WINDOW`` the account is locked for ``LOCKOUT``
    (``console.account_locked``, ``data`` ``{"failures", "until"}``)."""
    with state.store.unit_of_work(actor):
        # Only the window counts: no IP is kept longer.
        state.repo.delete_failures_before(now - throttle.WINDOW)
        if attempt is None:
            state.repo.record_failure(email, ip, now)
        _record(state, actor, "console.login_failed", user, {"step": step, **data})
        if user is None or throttle.is_locked(user, now):
            return
        count, _ = state.repo.failures_since(now - throttle.WINDOW, email=email)
        if count >= throttle.LOCK_AFTER:
            until = now + state.lockout
            state.repo.update_user(user.id, now=now, locked_until=until)
            facts = {"failures": count, "until": until.isoformat()}
            _record(state, actor, "console.account_locked", user, facts)


def signed_in(state: ConsoleState, actor: Actor, user: ConsoleUser, *, method: str) -> None:
    """A full sign-in by ``method``: the account's failures are forgotten
    (``console.login``, ``data`` ``{"method"}``). Call it in the unit that issued the
    session, so that both commit or neither."""
    with state.store.unit_of_work(actor):
        state.repo.clear_failures(user.email)
        _record(state, actor, "console.login", user, {"method": method})


def use_backup_code(
    state: ConsoleState, actor: Actor, user: ConsoleUser, code: str, now: datetime
) -> bool:
    """Spend one of the user's backup codes: True once per code
    (``console.backup_code_used``, ``data`` ``{"left"}``)."""
    with state.store.unit_of_work(actor):
        if not mfa.use_backup_code(state, user, code, now):
            return False
        left = state.repo.unused_backup_codes(user.id)
        _record(state, actor, "console.backup_code_used", user, {"left": left})
    return True


def set_password(
    state: ConsoleState,
    actor: Actor,
    user: ConsoleUser,
    *,
    password_hash: str,
    display_name: str | None = None,
    setup_token_hash: str | None = None,
) -> ConsoleUser | None:
    """First password (and display name) from a setup link, which is used up
    (``console.password_set``, ``data`` ``{"via": "setup_link"}``); None when the link was
    not usable (used, expired, another user's)."""
    now = state.clock()
    with state.store.unit_of_work(actor):
        if setup_token_hash is not None and (
            state.repo.use_setup_token(setup_token_hash, now) != user.id
        ):
            return None
        values: dict[str, Any] = {"password_hash": password_hash}
        if display_name:
            values["display_name"] = display_name
        updated = state.repo.update_user(user.id, now=now, **values)
        _record(state, actor, "console.password_set", user, {"via": "setup_link"})
    return updated


def rehash_password(state: ConsoleState, user: ConsoleUser, password_hash: str) -> None:
    """Store the same password under today's hash parameters (at sign-in). Not an event:
    the password did not change."""
    state.repo.update_user(user.id, now=state.clock(), password_hash=password_hash)


def change_password(
    state: ConsoleState, actor: Actor, user: ConsoleUser, *, password_hash: str, keep: str
) -> int:
    """A new password; every session of the user but ``keep`` (an id hash) ends
    (``console.password_changed``, ``data`` ``{"other_sessions_revoked"}``). The count."""
    now = state.clock()
    with state.store.unit_of_work(actor):
        state.repo.update_user(user.id, now=now, password_hash=password_hash)
        ended = state.repo.revoke_user_sessions(user.id, now, keep=keep)
        facts = {"other_sessions_revoked": ended}
        _record(state, actor, "console.password_changed", user, facts)
    return ended


# -- sessions -----------------------------------------------------------------------------


def end_session(
    state: ConsoleState, actor: Actor, id_hash: str, user_id: str, *, reason: str
) -> bool:
    """End a session found no longer valid (``console.session_ended``, ``data``
    ``{"reason"}``); False (nothing recorded) when it was revoked already."""
    with state.store.unit_of_work(actor):
        if not state.repo.revoke_session(id_hash, state.clock()):
            return False
        _record(state, actor, "console.session_ended", user_id, {"reason": reason})
    return True


def logout(state: ConsoleState, actor: Actor, user: ConsoleUser, id_hash: str) -> bool:
    """Revoke the user's own session ``id_hash`` (``console.logout``); False when it was
    not live."""
    with state.store.unit_of_work(actor):
        if not state.repo.revoke_session(id_hash, state.clock(), user_id=user.id):
            return False
        _record(state, actor, "console.logout", user)
    return True


def revoke_session(
    state: ConsoleState, actor: Actor, user: ConsoleUser, id_hash: str, *, handle: str
) -> bool:
    """Revoke one of the user's sessions (``console.session_revoked``, ``data``
    ``{"session": handle}``); False when it was not live."""
    with state.store.unit_of_work(actor):
        if not state.repo.revoke_session(id_hash, state.clock(), user_id=user.id):
            return False
        _record(state, actor, "console.session_revoked", user, {"session": handle})
    return True


def revoke_all_sessions(state: ConsoleState, actor: Actor, user: ConsoleUser) -> int:
    """Revoke every session of the user (``console.sessions_revoked_all``, ``data``
    ``{"count"}``). The count."""
    with state.store.unit_of_work(actor):
        count = state.repo.revoke_user_sessions(user.id, state.clock())
        _record(state, actor, "console.sessions_revoked_all", user, {"count": count})
    return count


# -- second factors -----------------------------------------------------------------------


def begin_totp(state: ConsoleState, user: ConsoleUser, secret: str) -> ConsoleUser:
    """Keep a pending TOTP secret (sealed) until a code of it turns it on. Not an event:
    no second factor changed yet."""
    sealed = mfa.seal_totp_secret(state, user.id, secret)
    return state.repo.update_user(user.id, now=state.clock(), totp_secret=sealed)


def enable_totp(
    state: ConsoleState, actor: Actor, user: ConsoleUser, step: int
) -> ConsoleUser | None:
    """Turn on the user's pending TOTP secret with the code of ``step``
    (``console.mfa_totp_enabled``); None when that step (or a later one) was used."""
    now = state.clock()
    with state.store.unit_of_work(actor):
        if not state.repo.accept_totp_step(user.id, step, now=now):
            return None
        updated = state.repo.update_user(user.id, now=now, totp_enabled=True)
        _record(state, actor, "console.mfa_totp_enabled", user)
    return updated


def disable_totp(state: ConsoleState, actor: Actor, user: ConsoleUser) -> None:
    """Turn TOTP off and drop its secret (``console.mfa_totp_disabled``). The caller has
    checked that another second factor remains."""
    with state.store.unit_of_work(actor):
        state.repo.update_user(user.id, now=state.clock(), totp_enabled=False, totp_secret=None)
        _record(state, actor, "console.mfa_totp_disabled", user)


def regenerate_backup_codes(state: ConsoleState, actor: Actor, user: ConsoleUser) -> list[str]:
    """New backup codes (the old ones stop working; ``console.backup_codes_generated``):
    the plain codes, to show once."""
    with state.store.unit_of_work(actor):
        codes = mfa.regenerate_backup_codes(state, user)
        _record(state, actor, "console.backup_codes_generated", user)
    return codes


def _passkey_facts(credential: WebAuthnCredential) -> dict[str, Any]:
    return {"credential": credential.id[:16]}


def add_passkey(state: ConsoleState, actor: Actor, credential: WebAuthnCredential) -> None:
    """Register a verified credential (``console.mfa_passkey_added``, ``data``
    ``{"credential": its id's first 16 characters}``, ``personal`` ``{"name"}``). Raises
    ``Conflict`` when the credential is registered already."""
    with state.store.unit_of_work(actor):
        if state.repo.get_credential(credential.id) is not None:
            raise Conflict("This authenticator is registered already.")
        state.repo.add_credential(credential)
        personal = {"name": credential.name}
        facts = _passkey_facts(credential)
        _record(state, actor, "console.mfa_passkey_added", credential.user_id, facts, personal)


def rename_passkey(
    state: ConsoleState, actor: Actor, credential: WebAuthnCredential, name: str
) -> None:
    """Rename one of the user's credentials (``console.mfa_passkey_renamed``). Raises
    ``NotFound``."""
    with state.store.unit_of_work(actor):
        if not state.repo.rename_credential(credential.user_id, credential.id, name):
            raise NotFound("Passkey not found.")
        facts, personal = _passkey_facts(credential), {"name": name}
        _record(state, actor, "console.mfa_passkey_renamed", credential.user_id, facts, personal)


def remove_passkey(state: ConsoleState, actor: Actor, credential: WebAuthnCredential) -> None:
    """Remove one of the user's credentials (``console.mfa_passkey_removed``). The caller
    has checked that another second factor remains. Raises ``NotFound``."""
    with state.store.unit_of_work(actor):
        if not state.repo.remove_credential(credential.user_id, credential.id):
            raise NotFound("Passkey not found.")
        facts, personal = _passkey_facts(credential), {"name": credential.name}
        _record(state, actor, "console.mfa_passkey_removed", credential.user_id, facts, personal)


def use_passkey(state: ConsoleState, credential: WebAuthnCredential, sign_count: int) -> None:
    """Record a credential's use (its new signature counter); part of the sign-in's unit."""
    state.repo.use_credential(credential.id, sign_count, state.clock())
