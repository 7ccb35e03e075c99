"""The store's schema version: read it, migrate it, and refuse to run on the wrong one.

The migrations are Alembic revisions shipped in ``flask_licensechain/migrations/`` (its package
docstring says how to add one). They run through Alembic's public API (``alembic.command``,
``MigrationContext``, ``ScriptDirectory``) inside ``Database.schema_change``: one transaction,
one process at a time (a PostgreSQL advisory lock; SQLite's write lock), so workers starting
together on an empty database create it once and the others find it done.

At start (``prepare``) a store is in one of these states:

- ``current``: at the code's head revision. Nothing to do.
- ``empty``: no LicenseChain table. Migrated to head: a first start just works.
- ``legacy``: the tables of revision ``0001`` without a version row, as ``create_all()`` left
  stores before migrations existed. Adopted (stamped ``0001``) when that is the head;
  otherwise refused like ``older``.
- ``older``: an earlier revision. Refused with ``SchemaVersionError`` naming
  ``flask --app APP licensechain db upgrade``: a server on a half-migrated schema would
  half-work, and migrating a shared production database is the operator's decision.
- ``newer``: a revision this code does not know (a newer release migrated it). Refused.

The version lives in its own table, ``lc_schema_version``, so the host app's own Alembic or
Flask-Migrate history in the same database is never touched.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from .database import Database

log = logging.getLogger("licensechain.store.migrate")

#: Alembic's version table for LicenseChain's revisions (not ``alembic_version``: the host
#: app may have its own).
VERSION_TABLE = "lc_schema_version"
#: Every LicenseChain table starts with this.
TABLE_PREFIX = "lc_"
#: The revision that ``create_all()`` stores hold without saying so.
LEGACY_REVISION = "0001"
#: The tables of ``LEGACY_REVISION``: all of them must be there to adopt a legacy store.
LEGACY_TABLES = frozenset(
    {"lc_apps", "lc_licenses", "lc_devices", "lc_api_keys", "lc_signing_keys", "lc_audit_events"}
)
#: What an operator runs to bring an older store up to date.
UPGRADE_COMMAND = "flask --app APP licensechain db upgrade"
# Any constant: it only has to be the same in every process migrating this database.
_MIGRATION_LOCK = 0x4C430001
_SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"

SchemaState = Literal["current", "empty", "legacy", "older", "newer"]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a store's schema stands. ``revision`` is ``None`` when no version is recorded
    (``empty`` or ``legacy``); ``head`` is the newest revision this code knows."""

    state: SchemaState
    revision: str | None
    head: str

    def as_dict(self) -> dict[str, str | None]:
        return {"state": self.state, "revision": self.revision, "head": self.head}


class SchemaVersionError(RuntimeError):
    """The store's schema is not the one this code runs on. The message says what to do.

    ``database`` is the store that was refused, so ``flask licensechain db ...`` can migrate
    it although the app could not start.
    """

    def __init__(self, message: str, status: SchemaStatus, database: Database) -> None:
        super().__init__(message)
        self.status = status
        self.database = database


def owns_table(name: str) -> bool:
    """Whether a table of this name belongs to LicenseChain (autogenerate compares only these)."""
    return name.startswith(TABLE_PREFIX)


def head_revision() -> str:
    """The newest revision shipped in ``flask_licensechain/migrations/versions``."""
    head = _script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package ships revisions
        raise RuntimeError("no LicenseChain migration found")
    return head


def status(db: Database) -> SchemaStatus:
    """The store's schema state, read in one snapshot. Raises ``Unavailable``."""
    with db.read() as conn:
        return _status(conn)


def prepare(db: Database) -> SchemaStatus:
    """Make the store usable at start, or refuse it (see the module docstring for the states).

    Creates an empty store and adopts a legacy one; raises ``SchemaVersionError`` for an
    older or newer schema, ``Unavailable`` when the database cannot be reached.
    """
    found = status(db)
    if found.state == "current":
        return found
    with db.schema_change(_MIGRATION_LOCK) as conn:
        found = _status(conn)  # another process may have migrated meanwhile
        if found.state == "empty":
            command.upgrade(alembic_config(conn), "head")
            log.info("created the LicenseChain schema at revision %s", found.head)
        elif found.state == "legacy" and found.head == LEGACY_REVISION:
            command.stamp(alembic_config(conn), LEGACY_REVISION)
            log.info("adopted a store made before migrations at revision %s", LEGACY_REVISION)
        elif found.state != "current":
            raise SchemaVersionError(_refusal(found), found, db)
        return _status(conn)


def upgrade(db: Database, revision: str = "head") -> tuple[SchemaStatus, SchemaStatus]:
    """Migrate the store up to ``revision``; a legacy store is adopted at ``0001`` first.

    Returns the status before and after. Raises ``SchemaVersionError`` when the store is newer
    than this code, ``ValueError`` for an unknown ``revision``, ``Unavailable``.
    """
    with schema_transaction(db) as conn:
        return upgrade_on(conn, db, revision)


@contextmanager
def schema_transaction(db: Database) -> Iterator[sa.Connection]:
    """The transaction migrations run in (``Database.schema_change`` behind the migration
    lock), for a caller that changes the schema and migrates it in one go (``restore``):
    pass the connection to ``upgrade_on``. Raises ``Unavailable``."""
    with db.schema_change(_MIGRATION_LOCK) as conn:
        yield conn


def upgrade_on(
    conn: sa.Connection, db: Database, revision: str = "head"
) -> tuple[SchemaStatus, SchemaStatus]:
    """``upgrade`` inside ``schema_transaction(db)``'s connection ``conn`` (nothing commits
    here). Same returns and errors as ``upgrade``."""
    before = _status(conn)
    if before.state == "newer":
        raise SchemaVersionError(_refusal(before), before, db)
    config = alembic_config(conn)
    target = _resolve(revision)
    if before.state == "legacy":
        command.stamp(config, LEGACY_REVISION)
    with _bad_target(revision):
        command.upgrade(config, target)
    return before, _status(conn)


def downgrade(db: Database, revision: str) -> tuple[SchemaStatus, SchemaStatus]:
    """Migrate the store down to ``revision`` (``base`` drops every LicenseChain table).

    Returns the status before and after. Raises ``SchemaVersionError`` when the store is newer
    than this code or has no recorded version, ``ValueError`` for an unknown ``revision``,
    ``Unavailable``.
    """
    with db.schema_change(_MIGRATION_LOCK) as conn:
        before = _status(conn)
        if before.state in ("legacy", "empty"):
            message = (
                "The LicenseChain store has no recorded schema revision to downgrade from. "
                f"Run {UPGRADE_COMMAND} first."
            )
            raise SchemaVersionError(message, before, db)
        if before.state == "newer":
            raise SchemaVersionError(_refusal(before), before, db)
        with _bad_target(revision):
            command.downgrade(alembic_config(conn), _resolve(revision))
        return before, _status(conn)


def alembic_config(conn: sa.Connection | None, location: Path | None = None) -> Config:
    """Alembic's configuration for LicenseChain's script directory (``location``, default the
    package's) that runs on ``conn``: for ``alembic.command`` calls, e.g. drafting a revision."""
    config = Config()
    # ConfigParser interpolates %: a path holding one must not break the lookup.
    where = str(location or _SCRIPT_LOCATION)
    config.set_main_option("script_location", where.replace("%", "%%"))
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["connection"] = conn
    return config


# -- internals ---------------------------------------------------------------------------


def _script_directory() -> ScriptDirectory:
    return _scripts_at(_SCRIPT_LOCATION)


@functools.cache
def _scripts_at(location: Path) -> ScriptDirectory:
    # Parsed once per process: the revision files do not change while it runs.
    return ScriptDirectory.from_config(alembic_config(None, location))


@contextmanager
def _bad_target(revision: str) -> Iterator[None]:
    """Alembic's refusal of a target (``upgrade`` to an older one, ``downgrade`` to a newer
    one) as ``ValueError``."""
    try:
        yield
    except CommandError as error:
        raise ValueError(f"cannot migrate to {revision!r}: {error}") from error


def _resolve(revision: str) -> str:
    """A revision id, ``head`` or ``base``; ``ValueError`` names the known ones otherwise."""
    if revision in ("head", "base"):
        return revision
    try:
        found = _script_directory().get_revision(revision)
    except CommandError as error:
        raise ValueError(f"unknown schema revision {revision!r}: {_known()}") from error
    if found is None:
        raise ValueError(f"unknown schema revision {revision!r}: {_known()}")
    return found.revision


def _known() -> str:
    revisions = [script.revision for script in _script_directory().walk_revisions()]
    return "known revisions are " + ", ".join(reversed(revisions)) + " (or head, base)"


def _status(conn: sa.Connection) -> SchemaStatus:
    head = head_revision()
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    if len(heads) > 1:
        raise RuntimeError(f"the store records several schema revisions: {heads}")
    if heads:
        revision = heads[0]
        if revision == head:
            return SchemaStatus("current", revision, head)
        try:
            known = _script_directory().get_revision(revision) is not None
        except CommandError:
            known = False
        return SchemaStatus("older" if known else "newer", revision, head)
    tables = {name for name in sa.inspect(conn).get_table_names() if owns_table(name)}
    tables.discard(VERSION_TABLE)
    if not tables:
        return SchemaStatus("empty", None, head)
    if LEGACY_TABLES <= tables:
        return SchemaStatus("legacy", None, head)
    raise RuntimeError(
        "the database holds some LicenseChain tables but no schema version and not all the "
        f"tables of revision {LEGACY_REVISION}: {sorted(tables)}. Restore it from a backup."
    )


def _refusal(found: SchemaStatus) -> str:
    if found.state == "newer":
        return (
            f"The LicenseChain store is at schema revision {found.revision}, which this "
            f"version of flask-licensechain does not know (its newest is {found.head}): a newer "
            "version migrated it. Run that version, or downgrade the store with it first "
            f"(flask --app APP licensechain db downgrade {found.head})."
        )
    where = "has no recorded revision" if found.revision is None else f"is at {found.revision}"
    return (
        f"The LicenseChain store's schema {where}, older than this code's {found.head}. "
        f"Migrate it first: {UPGRADE_COMMAND}"
    )


__all__ = [
    "LEGACY_REVISION",
    "TABLE_PREFIX",
    "UPGRADE_COMMAND",
    "VERSION_TABLE",
    "SchemaStatus",
    "SchemaVersionError",
    "alembic_config",
    "downgrade",
    "head_revision",
    "owns_table",
    "prepare",
    "schema_transaction",
    "status",
    "upgrade",
    "upgrade_on",
]
