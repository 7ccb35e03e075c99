"""Verification outcomes counted per UTC day, for the analytics endpoints.

A verify must stay one store read, so outcomes are not written one by one: ``VerificationTally``
counts them in memory and adds the counts to ``lc_verification_counts`` in one batch at most
every ``flush_seconds`` (1 s by default), from a timer thread that runs only while counts are
pending. A read through ``VerificationTally.flush`` first sees this process's counts at once;
other processes' counts arrive within ``flush_seconds``. At interpreter exit the pending counts
are written; a killed process loses at most ``flush_seconds`` of counts. A failed batch is kept
and tried again (bounded by ``max_pending`` distinct counters), and never fails a verify.

No personal data is kept: the day, the app and license ids, and the outcome (``valid`` or the
refusal reason). A key that matches no license counts under empty app and license ids.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import validation as check
from .apps import EVERY_APP, AppScope
from .database import Database
from .schema import to_utc, verification_counts

log = logging.getLogger(__name__)

#: the outcome of a verification that passed
VALID_OUTCOME: Final = "valid"
DEFAULT_FLUSH_SECONDS: Final = 1.0
DEFAULT_MAX_PENDING: Final = 100_000
#: the longest range one read may cover (a leap year and a day)
MAX_DAYS: Final = 367

#: (day, app id, license id, outcome)
CounterKey = tuple[str, str, str, str]
_COLUMNS: Final = ("day", "app_id", "license_id", "outcome")


def day_of(moment: datetime) -> str:
    """The UTC day of ``moment`` as ``YYYY-MM-DD``."""
    return to_utc(moment).date().isoformat()


class VerificationCountRepository:
    """Reads and adds to the per-day outcome counters."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._upsert: Any = None

    def _statement(self) -> Any:
        if self._upsert is None:
            dialect = postgresql if self._db.engine.dialect.name == "postgresql" else sqlite
            insert = dialect.insert(verification_counts)
            self._upsert = insert.on_conflict_do_update(
                index_elements=list(_COLUMNS),
                set_={"count": verification_counts.c.count + insert.excluded["count"]},
            )
        return self._upsert

    def add(self, counts: Mapping[CounterKey, int]) -> None:
        """Add ``counts`` to the stored counters in one transaction."""
        if not counts:
            return
        # One order for every writer, so concurrent batches lock rows in the same order
        # (PostgreSQL would otherwise risk a deadlock between two workers' batches).
        rows = [
            {"day": key[0], "app_id": key[1], "license_id": key[2], "outcome": key[3], "count": n}
            for key, n in sorted(counts.items())
        ]
        with self._db.write() as conn:
            conn.execute(self._statement(), rows)

    def per_day(
        self,
        since: date,
        until: date,
        *,
        app_id: str | None = None,
        license_id: str | None = None,
        scope: AppScope = EVERY_APP,
    ) -> dict[str, dict[str, int]]:
        """``{"YYYY-MM-DD": {outcome: count}}`` for the days from ``since`` to ``until``
        (inclusive) that have counts, of one app and/or one license when given."""
        table = verification_counts
        conditions = [
            table.c.day >= since.isoformat(),
            table.c.day <= until.isoformat(),
            scope.clause(table.c.app_id),
        ]
        if app_id is not None:
            conditions.append(table.c.app_id == check.text(app_id, "app_id"))
        if license_id is not None:
            conditions.append(table.c.license_id == check.text(license_id, "license_id"))
        statement = (
            sa.select(table.c.day, table.c.outcome, sa.func.sum(table.c.count))
            .where(*conditions)
            .group_by(table.c.day, table.c.outcome)
        )
        result: dict[str, dict[str, int]] = {}
        with self._db.single() as conn:
            for day, outcome, count in conn.execute(statement):
                result.setdefault(day, {})[outcome] = int(count)
        return result


class VerificationTally:
    """In-memory outcome counts of this process, added to the store in batches.

    Thread-safe. After a fork the child starts empty (the parent's counts are the parent's
    to write).
    """

    def __init__(
        self,
        repository: VerificationCountRepository,
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._repository = repository
        self._flush_seconds = flush_seconds
        self._max_pending = max_pending
        self._reset()
        self._closed = False
        atexit.register(_flush_at_exit, weakref.ref(self))

    @property
    def repository(self) -> VerificationCountRepository:
        """Where the counts go (read the stored counts through it)."""
        return self._repository

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: dict[CounterKey, int] = {}
        self._timer: threading.Timer | None = None
        self._dropped = 0
        self._day: tuple[int, str] = (0, "")  # (ordinal, "YYYY-MM-DD") of the last record

    def record(
        self, *, outcome: str, now: datetime, app_id: str | None, license_id: str | None
    ) -> None:
        """Count one verification outcome (``valid`` or the refusal reason)."""
        if os.getpid() != self._pid:
            self._reset()
        when = now if now.tzinfo is UTC else to_utc(now)
        date_key = when.toordinal()
        if date_key != self._day[0]:  # once a day: the date as text
            self._day = (date_key, when.date().isoformat())
        key = (self._day[1], app_id or "", license_id or "", outcome)
        with self._lock:
            pending = self._pending
            if key in pending:
                pending[key] += 1
            elif len(pending) < self._max_pending:
                pending[key] = 1
            else:
                self._dropped += 1
                if self._dropped == 1:
                    log.warning("verification counts are not being stored; dropping new ones")
                return
            if self._timer is None and not self._closed:
                timer = threading.Timer(self._flush_seconds, self._on_timer)
                timer.daemon = True
                self._timer = timer
                timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush(quiet=True)

    def flush(self, *, quiet: bool = False) -> None:
        """Write the pending counts now. A failure keeps them for the next try; it is raised
        unless ``quiet`` (then logged)."""
        if os.getpid() != self._pid:
            self._reset()
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            self._repository.add(batch)
        except Exception as error:  # the store may be down: keep the counts, try later
            with self._lock:
                for key, count in batch.items():
                    self._pending[key] = self._pending.get(key, 0) + count
                retry = self._timer is None and not self._closed
                if retry:
                    self._timer = threading.Timer(self._flush_seconds, self._on_timer)
                    self._timer.daemon = True
                    self._timer.start()
            if not quiet:
                raise
            log.warning("could not store verification counts (kept for a retry): %s", error)
        else:
            self._dropped = 0

    def close(self) -> None:
        """Stop the timer and write what is pending (best effort)."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush(quiet=True)


def _flush_at_exit(ref: weakref.ref[VerificationTally]) -> None:
    tally = ref()
    if tally is not None and not tally._closed:
        tally.close()


def day_range(days: int, today: date) -> list[date]:
    """The ``days`` days ending with ``today``, oldest first."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
