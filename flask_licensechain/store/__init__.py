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
from .audit import AuditKeys, AuditRepository, Verification
from .changes import Actor, Change, ChangeRecorder, UnitOfWork
from .database import DEFAULT_BUSY_TIMEOUT, Database, create_store_engine, normalize_url
from .licenses import LicenseRepository
from .migrate import SchemaStatus, SchemaVersionError
from .migrate import prepare as prepare_schema
from .migrate import upgrade as upgrade_schema
from .named_keys import store_named_key
from .records import (
    ApiKeyRecord,
    AppRecord,
    AuditRecord,
    BindOutcome,
    DeviceRecord,
    LicenseRecord,
    SigningKeyRecord,
)
from .revocations import RevocationRepository
from .signing_keys import SigningKeyRepository
from .webhooks import WebhookRepository


class Store:
    """The repositories over one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.database = Database(engine)
        self.apps = AppRepository(self.database)
        self.revocations = RevocationRepository(self.database)
        self.licenses = LicenseRepository(self.database, self.revocations)
        self.api_keys = ApiKeyRepository(self.database)
        self.signing_keys = SigningKeyRepository(self.database)
        self.audit = AuditRepository(self.database)
        #: opens units of work (``store/changes.py``); the audit log listens first
        self.changes = ChangeRecorder(self.database)
        self.changes.add_listener(self.audit.append)
        self.unit_of_work = self.changes.unit_of_work
        self.verification_counts = VerificationCountRepository(self.database)
        #: webhook endpoints, the outbox and deliveries (their listener: ``webhooks/outbox.py``)
        self.webhooks = WebhookRepository(self.database)
        #: this process's verification outcomes, written to ``verification_counts`` in batches
        self.verification_tally = VerificationTally(self.verification_counts)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def upgrade_schema(self) -> SchemaStatus:
        """Migrate the schema to the newest revision (``store/migrate.py``). Idempotent, and
        safe when several processes run it at once. Raises ``SchemaVersionError`` when the
        store is newer than this code, ``Unavailable``."""
        return upgrade_schema(self.database)[1]

    def prepare_schema(self) -> SchemaStatus:
        """At start: create an empty store, or refuse (``SchemaVersionError``, naming the
        command to run) one whose schema is older or newer than this code."""
        return prepare_schema(self.database)

    def ping(self) -> None:
        """Raise ``Unavailable`` unless the database answers."""
        try:
            with self.database.single() as conn:
                conn.exec_driver_sql("SELECT 1")
        except LicenseChainError as error:
            raise Unavailable(detail=error.detail) from error
        except exc.SQLAlchemyError as error:
            raise Unavailable(detail=f"{type(error).__name__}: {error}") from error

    def dispose(self) -> None:
        self.verification_tally.close()
        self.api_keys.usage.close()
        self.engine.dispose()


def open_store(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Store:
    """A store for a SQLAlchemy URL. ``postgres://`` and ``postgresql://`` use psycopg 3.

    ``busy_timeout`` (seconds, SQLite only) is how long a writer waits for the write lock.
    """
    return Store(create_store_engine(url, busy_timeout=busy_timeout))


__all__ = [
    "API_KEY_SCOPES",
    "Actor",
    "ApiKeyRecord",
    "ApiKeyRepository",
    "AppRecord",
    "AppRepository",
    "AuditKeys",
    "AuditRecord",
    "AuditRepository",
    "BindOutcome",
    "Change",
    "ChangeRecorder",
    "DeviceRecord",
    "LicenseRecord",
    "LicenseRepository",
    "RevocationRepository",
    "SchemaStatus",
    "SchemaVersionError",
    "SigningKeyRecord",
    "SigningKeyRepository",
    "Store",
    "UnitOfWork",
    "Verification",
    "VerificationCountRepository",
    "VerificationTally",
    "WebhookRepository",
    "normalize_url",
    "open_store",
    "store_named_key",
]
