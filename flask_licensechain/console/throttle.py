"""Sign-in protection: exponential backoff per account and per client IP, and lockout.

Every failed password or second-factor check is a row in ``lc_console_login_failures``
(email, IP, time). Within ``WINDOW``:

- an account with ``n >= ACCOUNT_FREE`` failures waits ``2 ** (n - ACCOUNT_FREE)`` seconds
  (at most ``MAX_WAIT``) after its last failure before the next attempt is even checked;
- an IP with ``n >= IP_FREE`` failures waits ``2 ** (n - IP_FREE)`` seconds likewise;
- the ``LOCK_AFTER``-th failure locks the account for ``LICENSECHAIN_CONSOLE_LOCKOUT_SECONDS``
  (an owner may unlock it sooner: ``services.users.unlock``).

(OWASP Authentication Cheat Sheet, "Protect against automated attacks".) A refused
attempt answers exactly like a wrong password: the caller gives one message and spends one
password-hash check whatever happened.

An attempt is counted BEFORE it is checked (``begin_attempt`` inserts its row, then judges
it by the rows inserted before it), so parallel requests cannot all pass the backoff while
each one's check is still running: the n-th of a burst sees the n-1 before it. A success
drops its row (``forget_attempt``); a failure keeps it (``services.users.login_failed``,
which also locks); an attempt
refused by the backoff is not counted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

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


def allowed(
    state: ConsoleState, email: str, ip: str, now: datetime, *, before_id: int | None = None
) -> bool:
    """Whether an attempt for ``email`` from ``ip`` may be checked now (no backoff due),
    counting the failures recorded before the row ``before_id`` when given."""
    since = now - WINDOW
    repo = state.repo
    for count, latest, free in (
        (*repo.failures_since(since, email=email, before_id=before_id), ACCOUNT_FREE),
        (*repo.failures_since(since, ip=ip, before_id=before_id), IP_FREE),
    ):
        if latest is not None and now < latest + timedelta(seconds=wait_after(count, free)):
            return False
    return True


def begin_attempt(state: ConsoleState, email: str, ip: str, now: datetime) -> int | None:
    """Count an attempt for ``email`` from ``ip`` before checking it: its row id when it
    may be checked now, else None (backoff due; the attempt is then not counted). End it
    with ``forget_attempt`` (success) or ``services.users.login_failed(..., attempt=id)``."""
    attempt = state.repo.record_failure(email, ip, now)
    if allowed(state, email, ip, now, before_id=attempt):
        return attempt
    state.repo.delete_failure(attempt)
    return None


def forget_attempt(state: ConsoleState, attempt: int) -> None:
    """The attempt succeeded: it is not a failure."""
    state.repo.delete_failure(attempt)


def is_locked(user: ConsoleUser, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now
