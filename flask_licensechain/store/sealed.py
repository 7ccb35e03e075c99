"""The store's sealed columns: which (table, column) pairs hold secrets sealed by
``core/sealing.py``, the key ids they use, and re-sealing them all under the first key.

A module that adds a sealed column registers it once, at import, beside its table::

    register_sealed_column(webhooks, "secret", context=lambda row: b"lc_webhooks.secret:" +
                           row.id.encode())

``context`` gives the associated data a row's value was sealed with (see ``Sealer.seal``).
The column may be binary (``LargeBinary``: the sealed text is stored as ASCII bytes) or text.

- ``key_ids_in_use(db)``: which key ids the stored values name, and where. The issuer refuses
  to start when one of them is not configured (``issuer.check_sealed_key_ids``).
- ``reseal_all(db, sealer)``: every value not sealed under the first key, re-sealed under it,
  in one transaction (``flask licensechain rotate-encryption-key``). A run that dies midway
  commits nothing, so every value stays readable with the keys it had. The servers keep
  serving meanwhile, and a value they write during the run (a webhook secret rotated, a TOTP
  secret enrolled) is never reverted: each value is swapped compare-and-swap, only while the
  column still holds what the run read, else read again (``_reseal_row``). On SQLite the run
  holds the write lock from its first read (``BEGIN IMMEDIATE``): nothing writes meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa

from ..core.errors import Conflict
from ..core.sealing import Sealer, sealed_key_id
from .database import Database

#: Advisory lock id of a re-sealing run (any constant shared by all processes).
_RESEAL_LOCK: Final = 0x4C430015
#: Compare-and-swap attempts per value before a run gives up (``_reseal_row``).
_CAS_ATTEMPTS: Final = 5

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SealedColumn:
    """A column of sealed values. ``context(row)`` is the associated data of a row's value
    (``row`` has every column of ``table``)."""

    table: sa.Table
    column: str
    context: Callable[[Any], bytes] = field(repr=False)

    @property
    def where(self) -> str:
        return f"{self.table.name}.{self.column}"

    @property
    def binary(self) -> bool:
        return isinstance(self.table.c[self.column].type, sa.LargeBinary)


#: Every sealed column, in registration order.
SEALED_COLUMNS: list[SealedColumn] = []


def register_sealed_column(
    table: sa.Table, column: str, *, context: Callable[[Any], bytes]
) -> SealedColumn:
    """Declare ``table.column`` as holding sealed values (idempotent per pair).

    :raises KeyError: the table has no such column.
    """
    table.c[column]
    for known in SEALED_COLUMNS:
        if known.table.name == table.name and known.column == column:
            return known
    entry = SealedColumn(table, column, context)
    SEALED_COLUMNS.append(entry)
    return entry


def _present(conn: sa.Connection) -> list[SealedColumn]:
    """The registered columns whose table exists in this database (an older schema may lack
    a table a newer module registered)."""
    names = set(sa.inspect(conn).get_table_names())
    return [entry for entry in SEALED_COLUMNS if entry.table.name in names]


def key_ids_in_use(db: Database) -> dict[str, list[str]]:
    """``{key id: ["table.column", ...]}`` for every sealed value stored.

    :raises KeyMaterialError: a stored value is not a sealed value.
    :raises Unavailable: the store is down.
    """
    found: dict[str, list[str]] = {}
    with db.read() as conn:
        for entry in _present(conn):
            col = entry.table.c[entry.column]
            for (value,) in conn.execute(sa.select(col).where(col.is_not(None))):
                places = found.setdefault(sealed_key_id(value), [])
                if entry.where not in places:
                    places.append(entry.where)
    return found


@dataclass(frozen=True)
class ResealReport:
    """What a re-sealing run did: values re-sealed per ``table.column``, the key id they are
    all under now, the key ids nothing stored needs any more, and the older key ids kept
    because the audit log's MACs still need them (``audit_key_ids``)."""

    resealed: dict[str, int]
    key_id: str
    removable: tuple[str, ...]
    audit_key_ids: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.resealed.values())


def _reseal_row(conn: sa.Connection, sealer: Sealer, entry: SealedColumn, row: Any) -> int:
    """Re-seal ``row``'s value, compare-and-swap: the UPDATE applies only while the column
    still holds the value read. A value changed meanwhile (a webhook secret rotated through
    the API) is read again and re-sealed only if it still needs it, so a newer value is never
    overwritten with a re-sealed older one. Returns 1 when a value was re-sealed, else 0.

    :raises Conflict: the value changed under every one of ``_CAS_ATTEMPTS`` attempts.
    """
    table, col = entry.table, entry.table.c[entry.column]
    match = sa.and_(*(c == getattr(row, c.name) for c in table.primary_key.columns))
    for _ in range(_CAS_ATTEMPTS):
        old = getattr(row, entry.column)
        if old is None or not sealer.needs_reseal(old):
            return 0
        context = entry.context(row)
        text = sealer.seal(sealer.unseal(old, context=context), context=context)
        new: str | bytes = text.encode("ascii") if entry.binary else text
        swapped = conn.execute(
            sa.update(table).where(match, col == old).values({entry.column: new})
        ).rowcount
        if swapped:
            return 1
        # READ COMMITTED (PostgreSQL): this sees the value committed meanwhile.
        row = conn.execute(sa.select(table).where(match)).one_or_none()
        if row is None:  # deleted meanwhile: nothing left to re-seal
            return 0
    raise Conflict(f"a value of {entry.where} kept changing while it was re-sealed: run again")


def reseal_all(db: Database, sealer: Sealer, *, progress: Progress | None = None) -> ResealReport:
    """Re-seal every stored value under ``sealer``'s first key, in one transaction.

    ``progress(where, done, total)`` is called before the first value of each column and
    after every 500 values (the CLI prints it). Concurrent runs queue behind one another.
    A value changed by another transaction meanwhile is kept (compare-and-swap,
    ``_reseal_row``); it is counted only if this run re-sealed it.

    :raises UnknownSealingKey: a value names a key the ring lacks (nothing is changed).
    :raises KeyMaterialError: a value does not authenticate (nothing is changed).
    :raises Conflict: a value kept changing under the run (nothing is changed).
    :raises Unavailable: the store is down.
    """
    resealed: dict[str, int] = {}
    with db.write() as conn:
        db.serialize(conn, _RESEAL_LOCK)
        for entry in _present(conn):
            col = entry.table.c[entry.column]
            rows = conn.execute(sa.select(entry.table).where(col.is_not(None))).all()
            stale = [row for row in rows if sealer.needs_reseal(getattr(row, entry.column))]
            total = len(stale)
            if progress is not None:
                progress(entry.where, 0, total)
            count = 0
            for done, row in enumerate(stale, start=1):
                count += _reseal_row(conn, sealer, entry, row)
                if progress is not None and (done % 500 == 0 or done == total):
                    progress(entry.where, done, total)
            resealed[entry.where] = count
    in_use = key_ids_in_use(db)
    removable = tuple(k for k in sealer.key_ids[1:] if k not in in_use)
    return ResealReport(resealed=resealed, key_id=sealer.primary_key_id, removable=removable)


__all__ = [
    "SEALED_COLUMNS",
    "ResealReport",
    "SealedColumn",
    "key_ids_in_use",
    "register_sealed_column",
    "reseal_all",
]
