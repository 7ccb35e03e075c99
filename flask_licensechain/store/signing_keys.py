"""Signing keys: the public JWK and the sealed private key (sealing: core/sealing.py).

Lifecycle: ``active`` (signs; exactly one) -> ``retiring`` (no longer signs, still in the JWKS
until ``expires_at``, when its last token is dead) -> ``retired`` (private key dropped).
A partial unique index makes a second active key impossible, whatever the callers do.
``sealed_private_key`` is a registered sealed column (``store/sealed.py``), context the kid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from ..core.errors import Conflict, InvalidRequest
from . import validation as check
from .database import Database
from .records import SigningKeyRecord
from .schema import signing_keys, to_utc
from .sealed import register_sealed_column

ACTIVE: Final = "active"
RETIRING: Final = "retiring"
RETIRED: Final = "retired"
KEY_STATES: Final = (ACTIVE, RETIRING, RETIRED)
_ROTATE_ATTEMPTS = 5
_ROTATION_LOCK = 0x4C430002  # advisory lock id; any constant shared by all processes

register_sealed_column(signing_keys, "sealed_private_key", context=lambda row: row.kid.encode())

_ACTIVE = sa.select(signing_keys).where(signing_keys.c.state == ACTIVE)


def _record(row: Any) -> SigningKeyRecord:
    sealed = row.sealed_private_key
    return SigningKeyRecord(
        kid=row.kid,
        public_jwk=dict(row.public_jwk),
        sealed_private_key=None if sealed is None else bytes(sealed),
        state=row.state,
        created_at=row.created_at,
        retired_at=row.retired_at,
        expires_at=row.expires_at,
    )


def _row(record: SigningKeyRecord) -> dict[str, Any]:
    if record.state not in KEY_STATES:
        raise InvalidRequest(f"signing key state must be one of {', '.join(KEY_STATES)}.")
    if not isinstance(record.kid, str) or not record.kid:
        raise InvalidRequest("signing key kid must be a non-empty string.")
    return {
        "kid": record.kid,
        "public_jwk": dict(record.public_jwk),
        "sealed_private_key": record.sealed_private_key,
        "state": record.state,
        "created_at": to_utc(record.created_at),
        "retired_at": None if record.retired_at is None else to_utc(record.retired_at),
        "expires_at": None if record.expires_at is None else to_utc(record.expires_at),
    }


class SigningKeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, record: SigningKeyRecord) -> None:
        """Store a key as given. A second ``active`` key (or a known kid) is a ``Conflict``."""
        values = _row(record)
        with self._db.write() as conn:
            conn.execute(sa.insert(signing_keys).values(**values))

    def get(self, kid: str) -> SigningKeyRecord | None:
        if not check.is_lookup(kid):
            return None
        with self._db.single() as conn:
            row = conn.execute(sa.select(signing_keys).where(signing_keys.c.kid == kid)).first()
        return None if row is None else _record(row)

    def active(self) -> SigningKeyRecord | None:
        with self._db.single() as conn:
            row = conn.execute(_ACTIVE).first()
        return None if row is None else _record(row)

    def trusted(self, now: datetime) -> list[SigningKeyRecord]:
        """The active key first, then retiring keys whose tokens may still be live."""
        now = to_utc(now)
        statement = (
            sa.select(signing_keys)
            .where(
                sa.or_(
                    signing_keys.c.state == ACTIVE,
                    sa.and_(signing_keys.c.state == RETIRING, signing_keys.c.expires_at > now),
                )
            )
            .order_by(
                sa.case((signing_keys.c.state == ACTIVE, 0), else_=1),
                signing_keys.c.created_at.desc(),
                signing_keys.c.kid,
            )
        )
        with self._db.single() as conn:
            rows = conn.execute(statement).all()
        return [_record(row) for row in rows]

    def rotate(self, new: SigningKeyRecord, *, now: datetime, old_expires_at: datetime) -> None:
        """Make ``new`` the active key; the active key before it starts retiring.

        Concurrent rotations queue behind one another (an advisory lock on PostgreSQL,
        BEGIN IMMEDIATE on SQLite), so each retires the key the previous one made active.
        Should a writer bypass that queue, the one-active index refuses the second active
        key and the rotation starts over.
        """
        values = {**_row(new), "state": ACTIVE, "retired_at": None, "expires_at": None}
        now, old_expires_at = to_utc(now), to_utc(old_expires_at)
        for attempt in range(_ROTATE_ATTEMPTS):
            try:
                with self._db.write() as conn:
                    self._db.serialize(conn, _ROTATION_LOCK)
                    conn.execute(
                        sa.update(signing_keys)
                        .where(signing_keys.c.state == ACTIVE)
                        .values(state=RETIRING, retired_at=now, expires_at=old_expires_at)
                    )
                    conn.execute(sa.insert(signing_keys).values(**values))
                return
            except Conflict:
                if attempt == _ROTATE_ATTEMPTS - 1 or self.get(new.kid) is not None:
                    raise  # out of attempts, or the kid itself is taken: a real conflict

    def retire_expired(self, now: datetime) -> int:
        """Retire the retiring keys whose last token has expired; drop their private keys."""
        now = to_utc(now)
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(signing_keys)
                .where(signing_keys.c.state == RETIRING, signing_keys.c.expires_at <= now)
                .values(state=RETIRED, sealed_private_key=None)
            )
        return result.rowcount
