"""``memory://``: the denylist in process memory, optionally kept in step with the store.

Without a source it is one process's own list (tests, a single-process gate).

With a ``RevocationSource`` (the issuer's store) it is the embedded default's denylist: the
store holds every revocation, and each process keeps a copy that it refreshes *on the
request path, at most once per* ``poll_interval`` seconds. A refresh reads one counter row;
only when the counter moved does it read the entries written since. So a check costs no
database round trip except one cheap read per interval, and every process refuses a
revocation committed by any other at most ``poll_interval`` seconds later.

Why this bound holds: a check at time ``t`` either starts a refresh (which reads the store
as of ``>= t``) or finds that the last refresh *started* after ``t - poll_interval``.

Fail closed: the first check loads the whole table (rebuild), and a check that finds the
copy older than ``max_staleness`` seconds and cannot refresh it raises ``Unavailable``
(unless ``fail_open``). A forked worker keeps the parent's table and refreshes it on its
first check.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Final

from ..errors import Unavailable
from .base import (
    KIND_BLOCK,
    KIND_JTI,
    LIFT_GRACE,
    Revocation,
    RevocationSource,
    RevocationTable,
    lifted,
    ttl_entry,
)

log = logging.getLogger("licensechain.denylist")

#: Default seconds between two reads of the store's change counter (per process).
DEFAULT_POLL_INTERVAL: Final = 0.25
_PURGE_EVERY: Final = 60.0


class MemoryDenylist:
    """A ``Denylist`` in memory; with ``source``, a copy of the store's (module doc)."""

    def __init__(
        self,
        source: RevocationSource | None = None,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_staleness: float | None = None,
        fail_open: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = RevocationTable()
        self.source = source
        self.poll_interval = max(0.0, float(poll_interval))
        #: seconds the copy may lag when the store cannot answer, before checks fail closed
        self.max_staleness = (
            float(max_staleness) if max_staleness is not None else max(2.0, 4 * poll_interval)
        )
        self.fail_open = fail_open
        self._clock = clock
        self._seen = -1  # the store counter the table matches; -1: never loaded
        self._next_poll = float("-inf")  # monotonic time of the next due refresh
        self._refreshed_at = float("-inf")  # monotonic start of the last good refresh
        self._next_purge = time.monotonic() + _PURGE_EVERY
        self._poll_lock = threading.Lock()
        _live.add(self)

    # -- Denylist ----------------------------------------------------------------------

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        if self.source is not None and time.monotonic() >= self._next_poll:
            self.refresh()
        return self.table.is_revoked(jti, sub, iat, self._clock)

    def publish(self, entries: Iterable[Revocation]) -> None:
        self.table.apply(entries, self._clock())

    def revoke_jti(self, jti: str, ttl: float) -> None:
        self.publish([ttl_entry(KIND_JTI, jti, ttl, self._clock())])

    def revoke_sub(self, sub: str, ttl: float) -> None:
        self.publish([ttl_entry(KIND_BLOCK, sub, ttl, self._clock())])

    def unrevoke_sub(self, sub: str) -> None:
        self.publish([lifted(sub)])

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self.table)

    # -- keeping in step with the store ------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Bring the copy up to the store (one counter read; the new entries if it moved).

        Called by ``is_revoked`` when due. Raises ``Unavailable`` when the store cannot
        answer and the copy is older than ``max_staleness`` (or was never loaded).
        """
        source = self.source
        if source is None:
            return
        # Another thread may be refreshing: wait for it (then find the copy fresh), so no
        # answer ever comes from a copy older than the interval.
        if not self._poll_lock.acquire(timeout=self.max_staleness):
            self._stale("the store refresh is stuck")
            return
        try:
            started = time.monotonic()
            if not force and started < self._next_poll:
                return  # another thread refreshed while we waited
            try:
                self._pull(source)
            except Exception as exc:
                if self._seen < 0 or started - self._refreshed_at > self.max_staleness:
                    self._stale(f"store unreachable: {exc}")
                else:
                    log.warning("denylist refresh failed, keeping the copy for now: %s", exc)
                self._next_poll = started + min(self.poll_interval, 0.1)
                return
            self._refreshed_at = started
            self._next_poll = started + self.poll_interval
            if started >= self._next_purge:
                self.table.purge(self._clock())
                self._next_purge = started + _PURGE_EVERY
        finally:
            self._poll_lock.release()

    def rebuild(self) -> None:
        """Reload the whole table from the store (start-up, or after a gap)."""
        source = self.source
        if source is None:
            return
        with self._poll_lock:
            started = time.monotonic()
            now = self._clock()
            seq, entries = source.snapshot(now)
            self.table.replace(entries, now)
            self._seen = seq
            self._refreshed_at = started
            self._next_poll = started + self.poll_interval

    @property
    def seen(self) -> int:
        """The store change counter the copy matches (-1 before the first load)."""
        return self._seen

    def _pull(self, source: RevocationSource) -> None:
        now = self._clock()
        if self._seen < 0 or time.monotonic() - self._refreshed_at > LIFT_GRACE / 2:
            seq, entries = source.snapshot(now)
            self.table.replace(entries, now)
            self._seen = seq
            log.info("denylist loaded from the store (%d entries)", len(self.table))
            return
        counter = source.counter()
        if counter == self._seen:
            return
        if counter < self._seen:  # the store went back (restored): its numbers are reused
            self._seen = -1
            self._pull(source)
            return
        seq, entries = source.changes_since(self._seen)
        self.table.apply(entries, now)
        self._seen = max(self._seen, seq)

    def _stale(self, why: str) -> None:
        if self.fail_open:
            log.warning("denylist may be stale, failing open: %s", why)
            return
        raise Unavailable(detail=f"denylist cannot be brought up to date: {why}")


_live: weakref.WeakSet[MemoryDenylist] = weakref.WeakSet()


def _reset_locks_after_fork() -> None:
    # A lock held by another thread of the parent at fork time would stay held forever.
    for denylist in list(_live):
        denylist._poll_lock = threading.Lock()
        denylist.table.lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_locks_after_fork)
