"""Sign-in protection: exponential backoff per account and per client IP, and lockout.

Every failed password or second-factor check is a row in ``lc_console_login_failures``
(email, IP, time). Within ``WINDOW``:

- an account with ``n >= ACCOUNT_FREE`` failures waits ``2 ** (n - ACCOUNT_FREE)`` seconds
  (at most ``MAX_WAIT``) after its last failure before the next attempt is even checked;
- an IP with ``n >= IP_FREE`` failures waits ``2 ** (n - IP_FREE)`` seconds likewise;
- the ``LOCK_AFTER``-th failure locks the account for ``LICENSECHAIN_CONSOLE_LOCKOUT_SECONDS``
  (an owner may unlock it sooner: ``unlock``).

(OWASP Authentication Cheat Sheet, "Protect against automated attacks".) A refused
attempt answers exactly like a wrong password: the caller gives one message and spends one
password-hash check whatever happened.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from .audit import audit_event
from .repository import ConsoleUser
from .state import ConsoleState

WINDOW: Final = timedelta(minutes=15)
LOCK_AFTER: Final = 10
ACCOUNT_FREE: Final = 3
IP_FREE: Final = 10
MAX_WAIT: Final = 300.0


def wait_after(failures: int, free: int) -> float:
    """Seconds to wait after the last of ``failures`` failures (0 below ``free``)."""
    if failures < free:
        return 0.0
    return min(2.0 ** (failures - free), MAX_WAIT)


def normalize_email(email: str) -> str:
    return email.strip().lower()[:320]


def allowed(state: ConsoleState, email: str, ip: str, now: datetime) -> bool:
    """Whether an attempt for ``email`` from ``ip`` may be checked now (no backoff due)."""
    since = now - WINDOW
    for count, latest, free in (
        (*state.repo.failures_since(since, email=email), ACCOUNT_FREE),
        (*state.repo.failures_since(since, ip=ip), IP_FREE),
    ):
        if latest is not None and now < latest + timedelta(seconds=wait_after(count, free)):
            return False
    return True


def is_locked(user: ConsoleUser, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def record_failure(
    state: ConsoleState, email: str, ip: str, user: ConsoleUser | None, now: datetime, *, step: str
) -> None:
    """Count a failed ``step`` (``password`` or ``second_factor``); lock the account at
    ``LOCK_AFTER`` failures within ``WINDOW``. Audited."""
    state.repo.delete_failures_before(now - WINDOW)  # only the window counts: no IP kept longer
    state.repo.record_failure(email, ip, now)
    audit_event(
        state.store,
        "console.login_failed",
        actor=None if user is None else f"user:{user.id}",
        target=None if user is None else f"user:{user.id}",
        step=step,
        ip=ip,
    )
    if user is None or is_locked(user, now):
        return
    count, _ = state.repo.failures_since(now - WINDOW, email=email)
    if count >= LOCK_AFTER:
        state.repo.update_user(user.id, now=now, locked_until=now + state.lockout)
        audit_event(
            state.store,
            "console.account_locked",
            actor=None,
            target=f"user:{user.id}",
            failures=count,
            until=(now + state.lockout).isoformat(),
        )


def record_success(state: ConsoleState, email: str) -> None:
    """A full sign-in: the account's failures are forgotten."""
    state.repo.clear_failures(email)


def unlock(state: ConsoleState, user: ConsoleUser, *, actor: str, now: datetime) -> None:
    """Lift a lock and forget the account's failures (an owner's action). Audited."""
    state.repo.update_user(user.id, now=now, locked_until=None)
    state.repo.clear_failures(user.email)
    audit_event(state.store, "console.account_unlocked", actor=actor, target=f"user:{user.id}")
