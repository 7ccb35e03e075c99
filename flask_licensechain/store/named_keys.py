"""Named secret keys kept in the store, sealed under the keyring: for HMACs and keyed
pseudonyms that must outlive a rotation of the encryption keys.

A key derived from an encryption key would change when that key is rotated, and every MAC or
pseudonym made with it would stop matching. A named key is 32 random bytes made once
(``os.urandom``), stored in ``lc_named_keys`` sealed by the keyring (a registered sealed
column: ``rotate-encryption-key`` re-seals it, the key itself never changes).

    key = store_named_key(store.database, sealer, "console.backup_codes")

Names in use: ``console.backup_codes`` (HMAC of console backup codes),
``customers.pseudonym`` (keyed pseudonyms written by a customer erasure).
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa

from ..core.errors import Conflict
from ..core.sealing import Sealer
from .database import Database
from .schema import named_keys
from .sealed import register_sealed_column

KEY_BYTES: Final = 32


def _context(name: str) -> bytes:
    return b"lc_named_keys:" + name.encode()


register_sealed_column(named_keys, "sealed_key", context=lambda row: _context(row.name))

_cache: dict[tuple[int, str], bytes] = {}
_lock = threading.Lock()


def store_named_key(db: Database, sealer: Sealer, name: str) -> bytes:
    """The 32-byte key called ``name`` in this store, made on first use (safe when several
    processes race: one insert wins, the others read it). Cached per process.

    :raises KeyMaterialError: the stored key does not unseal.
    :raises Unavailable: the store is down.
    """
    slot = (id(db), name)
    with _lock:
        cached = _cache.get(slot)
    if cached is not None:
        return cached
    key = _read(db, sealer, name)
    if key is None:
        fresh = os.urandom(KEY_BYTES)
        sealed = sealer.seal(fresh, context=_context(name)).encode("ascii")
        try:
            with db.write() as conn:
                conn.execute(
                    sa.insert(named_keys).values(
                        name=name, sealed_key=sealed, created_at=datetime.now(UTC)
                    )
                )
            key = fresh
        except Conflict:
            key = _read(db, sealer, name)
            assert key is not None
    with _lock:
        _cache[slot] = key
    return key


def _read(db: Database, sealer: Sealer, name: str) -> bytes | None:
    with db.single() as conn:
        sealed = conn.execute(
            sa.select(named_keys.c.sealed_key).where(named_keys.c.name == name)
        ).scalar()
    return None if sealed is None else sealer.unseal(bytes(sealed), context=_context(name))


__all__ = ["KEY_BYTES", "store_named_key"]
