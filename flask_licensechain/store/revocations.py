"""Every revocation, kept in the store: the source of truth that every denylist follows.

Three kinds of row (``flask_licensechain.core.denylist.base`` describes them): a revoked
token id (``jti``) until its expiry, a license block (revoked or suspended; an activation
lifts it), and a license's "tokens issued before ``not_before`` are void" mark. Each write
also advances one change counter in the same transaction; a denylist reads that counter at
most once per poll interval and reads rows only when it moved (``changes_since``).

Writers serialise on the counter row (PostgreSQL row lock; SQLite's single writer), so
change numbers are committed in order and a reader never skips one.

``narrowing`` is the rule of which license changes void outstanding tokens: revoking or
suspending (a block), and anything that takes rights away from tokens already issued (a
mark): the expiry moved earlier than a live token's ``exp`` may reach, a feature removed,
the plan changed, a device released, ``maxDevices`` lowered below the bound count, a
hardware id newly required. Widening voids nothing; a new verify issues a fresh token.

A mark compares whole seconds of ``iat`` with the clock of the process that made the change;
across hosts it is exact only as far as their clocks agree (keep them on NTP, as ``exp``
and the leeway already require). A new token is issued no earlier than the second after
the license's last change (``wait_until_issuable``), so a mark never voids it.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..core.denylist.base import (
    KIND_BEFORE,
    KIND_BLOCK,
    KIND_JTI,
    LIFT_GRACE,
    REVOCATION_HORIZON,
    Revocation,
)
from .database import Database
from .records import LicenseRecord
from .schema import revocation_counter, revocations

#: Called with the entries a change committed (``Denylist.publish``): speed, not truth.
Announce = Callable[[Sequence[Revocation]], None]

#: Lifted and expired rows are kept this long (seconds) so that every poller sees them.
PURGE_GRACE: Final = LIFT_GRACE
BLOCKING_STATUSES: Final = frozenset({"SUSPENDED", "REVOKED"})
_COUNTER_ID: Final = 1

_COUNTER = sa.select(revocation_counter.c.value).where(revocation_counter.c.id == _COUNTER_ID)
_ENTRY_COLUMNS = (
    revocations.c.kind,
    revocations.c.ident,
    revocations.c.until,
    revocations.c.not_before,
    revocations.c.seq,
)
_SINCE = (
    sa.select(*_ENTRY_COLUMNS)
    .where(revocations.c.seq > sa.bindparam("seq"))
    .order_by(revocations.c.seq)
)
_LIVE = sa.select(*_ENTRY_COLUMNS).where(revocations.c.until > sa.bindparam("now"))


def narrowing(
    before: LicenseRecord, after: LicenseRecord, now: float, *, released: bool = False
) -> list[Revocation]:
    """The entries a change from ``before`` to ``after`` at ``now`` (unix seconds) needs."""
    lid = after.id
    entries: list[Revocation] = []
    if after.status in BLOCKING_STATUSES:
        entries.append(Revocation(KIND_BLOCK, lid, now + REVOCATION_HORIZON))
    elif before.status in BLOCKING_STATUSES:
        entries.append(Revocation(KIND_BLOCK, lid, now))  # lifted
    if released or _rights_narrowed(before, after, now):
        entries.append(before_mark(lid, now))
    return entries


def before_mark(license_id: str, now: float) -> Revocation:
    """Void the license's tokens issued up to ``now``: a token's ``iat`` is whole seconds,
    so every ``iat <= floor(now)`` is void, and issuance waits for ``not_before``
    (``tokens_issuable_from``)."""
    return Revocation(KIND_BEFORE, license_id, now + REVOCATION_HORIZON, math.floor(now) + 1)


def tokens_issuable_from(record: LicenseRecord) -> int:
    """The first ``iat`` (unix seconds) a new token of this license may carry.

    A change may have voided every token issued up to its second (``before_mark``), so a
    token is never issued in the same second as the license's last change. A license never
    changed since its creation has no such limit (0).
    """
    if record.updated_at == record.created_at:
        return 0
    return math.floor(record.updated_at.timestamp()) + 1


def wait_until_issuable(record: LicenseRecord, now: datetime) -> datetime:
    """``now``, or (when the license changed within this second) the moment a new token may
    be issued: at most one second later. Returns the issue time to use."""
    first = tokens_issuable_from(record)
    if first <= now.timestamp():
        return now
    time.sleep(first - now.timestamp())
    return datetime.fromtimestamp(first, UTC)


def _rights_narrowed(before: LicenseRecord, after: LicenseRecord, now: float) -> bool:
    if after.plan != before.plan:
        return True
    if not set(before.features) <= set(after.features):
        return True
    if after.require_hwuid and not before.require_hwuid:
        return True
    if after.max_devices < before.max_devices and after.max_devices < len(before.devices):
        return True
    old, new = before.expires_at, after.expires_at
    if new is not None and (old is None or new < old):
        # Only a token that may still be alive with an exp after the new expiry is hurt.
        return new.timestamp() < now + REVOCATION_HORIZON
    return False


def _entry(row: Any) -> Revocation:
    return Revocation(row.kind, row.ident, float(row.until), int(row.not_before))


class RevocationRepository:
    """The revocations table and its change counter (module doc)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._store_id: str | None = None

    def ensure_counter(self, conn: sa.Connection) -> None:
        """Create the counter row if missing (idempotent; inside a write transaction)."""
        values = {"id": _COUNTER_ID, "value": 0, "store_id": secrets.token_hex(16)}
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(revocation_counter).values(**values).on_conflict_do_nothing())

    # -- RevocationSource ------------------------------------------------------------

    @property
    def store_id(self) -> str:
        if self._store_id is None:
            with self._db.single() as conn:
                found = conn.scalar(sa.select(revocation_counter.c.store_id))
            if found is None:
                with self._db.write() as conn:
                    self.ensure_counter(conn)
                    found = conn.scalar(sa.select(revocation_counter.c.store_id))
            self._store_id = str(found)
        return self._store_id

    def counter(self) -> int:
        with self._db.single() as conn:
            return int(conn.scalar(_COUNTER) or 0)

    def changes_since(self, seq: int) -> tuple[int, list[Revocation]]:
        with self._db.single() as conn:
            rows = conn.execute(_SINCE, {"seq": seq}).all()
        return (int(rows[-1].seq) if rows else seq), [_entry(row) for row in rows]

    def snapshot(self, now: float) -> tuple[int, list[Revocation]]:
        with self._db.read() as conn:
            # The counter first: a row committed after it is re-read later, never missed.
            seq = int(conn.scalar(_COUNTER) or 0)
            rows = conn.execute(_LIVE, {"now": now}).all()
        return seq, [_entry(row) for row in rows]

    # -- writing ------------------------------------------------------------------------

    def revoke_token(
        self, jti: str, until: float, now: float, *, announce: Announce | None = None
    ) -> None:
        """Record a revoked token id until ``until`` (unix seconds), then announce it."""
        entries = [Revocation(KIND_JTI, jti, until)]
        with self._db.write() as conn:
            self.record(conn, entries, now)
        if announce is not None:
            announce(entries)

    def record(self, conn: sa.Connection, entries: Sequence[Revocation], now: float) -> int:
        """Write ``entries`` in the caller's write transaction; returns the change number.

        A token id keeps its latest expiry, a mark its latest time, a block the value written
        (so an activation lifts it). Rows lifted or expired for ``PURGE_GRACE`` are dropped.
        """
        if not entries:
            return 0
        bumped = conn.execute(
            sa.update(revocation_counter)
            .where(revocation_counter.c.id == _COUNTER_ID)
            .values(value=revocation_counter.c.value + 1)
        )
        if bumped.rowcount == 0:
            self.ensure_counter(conn)
            conn.execute(
                sa.update(revocation_counter)
                .where(revocation_counter.c.id == _COUNTER_ID)
                .values(value=revocation_counter.c.value + 1)
            )
        seq = int(conn.scalar(_COUNTER) or 0)
        for entry in entries:
            self._upsert(conn, entry, seq)
        conn.execute(sa.delete(revocations).where(revocations.c.until < now - PURGE_GRACE))
        return seq

    @staticmethod
    def _upsert(conn: sa.Connection, entry: Revocation, seq: int) -> None:
        key = (revocations.c.kind == entry.kind) & (revocations.c.ident == entry.ident)
        old = conn.execute(sa.select(revocations.c.until, revocations.c.not_before).where(key))
        row = old.first()
        until, not_before = entry.until, entry.not_before
        if row is None:
            conn.execute(
                sa.insert(revocations).values(
                    kind=entry.kind, ident=entry.ident, until=until, not_before=not_before, seq=seq
                )
            )
            return
        if entry.kind != KIND_BLOCK:
            until = max(until, float(row.until))
            not_before = max(not_before, int(row.not_before))
        conn.execute(
            sa.update(revocations).where(key).values(until=until, not_before=not_before, seq=seq)
        )
