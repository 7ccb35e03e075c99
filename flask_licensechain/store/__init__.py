"""SQLAlchemy Core tables and one repository per aggregate.

``open_store(url)`` gives a ``Store`` on SQLite (WAL) or PostgreSQL (psycopg 3); the same code
and the same tests run on both. Every repository method is its own transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc

from ..core.errors import LicenseChainError, Unavailable
from .analytics import VerificationCountRepository, VerificationTally
from .api_keys import API_KEY_SCOPES, ApiKeyRepository
from .apps import AppRepository
from .audit import AuditRepository
from .database import DEFAULT_BUSY_TIMEOUT, Database, create_store_engine, normalize_url
from .licenses import LicenseRepository
from .records import (
    ApiKeyRecord,
    AppRecord,
    AuditRecord,
    BindOutcome,
    DeviceRecord,
    LicenseRecord,
    SigningKeyRecord,
)
from .schema import metadata
from .signing_keys import SigningKeyRepository

# Any constant will do: it only has to be the same in every process creating the tables.
_CREATE_ALL_LOCK = 0x4C430001


class Store:
    """The repositories over one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._db = Database(engine)
        self.apps = AppRepository(self._db)
        self.licenses = LicenseRepository(self._db)
        self.api_keys = ApiKeyRepository(self._db)
        self.signing_keys = SigningKeyRepository(self._db)
        self.audit = AuditRepository(self._db)
        self.verification_counts = VerificationCountRepository(self._db)
        #: this process's verification outcomes, written to ``verification_counts`` in batches
        self.verification_tally = VerificationTally(self.verification_counts)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def create_all(self) -> None:
        """Create missing tables and indexes. Idempotent, and safe when several workers start
        at once: SQLite serializes them with BEGIN IMMEDIATE, PostgreSQL with an advisory lock
        (its DDL is transactional too)."""
        with self._db.write() as conn:
            self._db.serialize(conn, _CREATE_ALL_LOCK)
            metadata.create_all(conn)

    def ping(self) -> None:
        """Raise ``Unavailable`` unless the database answers."""
        try:
            with self._db.single() as conn:
                conn.exec_driver_sql("SELECT 1")
        except LicenseChainError as error:
            raise Unavailable(detail=error.detail) from error
        except exc.SQLAlchemyError as error:
            raise Unavailable(detail=f"{type(error).__name__}: {error}") from error

    def dispose(self) -> None:
        self.verification_tally.close()
        self.engine.dispose()


def open_store(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Store:
    """A store for a SQLAlchemy URL. ``postgres://`` and ``postgresql://`` use psycopg 3.

    ``busy_timeout`` (seconds, SQLite only) is how long a writer waits for the write lock.
    """
    return Store(create_store_engine(url, busy_timeout=busy_timeout))


__all__ = [
    "API_KEY_SCOPES",
    "ApiKeyRecord",
    "ApiKeyRepository",
    "AppRecord",
    "AppRepository",
    "AuditRecord",
    "AuditRepository",
    "BindOutcome",
    "DeviceRecord",
    "LicenseRecord",
    "LicenseRepository",
    "SigningKeyRecord",
    "SigningKeyRepository",
    "Store",
    "VerificationCountRepository",
    "VerificationTally",
    "normalize_url",
    "open_store",
]
