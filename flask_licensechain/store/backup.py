"""Encrypted backups of the store, and restoring them.

Methods (``backup(..., method="auto")`` picks the first that applies):

- ``sqlite-backup``: SQLite's online backup API (``sqlite3.Connection.backup``) copies the
  whole database file page by page from one read snapshot: consistent while the server
  writes. Restore reads only the ``lc_*`` tables of that file (schema, rows, indexes,
  triggers, AUTOINCREMENT counters) into the target: a host application's own tables in
  the target file are left as they are, and its tables in the backup are not brought back.
- ``pg_dump``: PostgreSQL's ``pg_dump --format=custom`` of the ``lc_*`` tables (one
  repeatable-read snapshot, consistent while serving). Restore has ``pg_restore`` turn the
  archive into its SQL script without touching any database (an archive it cannot read is
  refused there), then runs the script on the store's own connection, inside the restore's
  transaction: ``pg_restore`` runs in another process, so letting it write to the database
  would split the restore into two transactions (the old tables dropped in ours, the new
  ones loaded in its), and a failing ``pg_restore`` would leave a store without tables.
  Restoring into a scratch schema and swapping it in is not possible either: the archive
  names its schema and ``pg_restore`` cannot rename it. Used when ``pg_dump`` is on
  ``PATH``; restoring needs ``pg_restore``.
- ``logical``: otherwise, every ``lc_*`` table read through SQLAlchemy in one snapshot, as
  JSON; restored by migrating the emptied target to the backup's revision and inserting the
  rows (foreign-key order).

Restore is one transaction whatever the method (``migrate.schema_transaction``: PostgreSQL
and SQLite both have transactional DDL): the in-use check, dropping the target's ``lc_*``
tables, loading the backup's, and migrating them to this code's head. A failure at any
step (a row that does not load, a lost connection, a full disk) rolls it all back: the
store is left as it was. It touches only the ``lc_*`` tables (the schema version,
``lc_schema_version``, among them). Restoring brings the store back to the moment of the
backup: whatever changed since is gone, including data erased since (a customer's
erasure, say); redo such erasures after a restore.

File format (version 1)::

    LCBACKUP1\\n
    <header: one line of JSON>\\n
    <nonce (12 bytes) || AES-256-GCM(gzip(payload)) || tag>

Header: ``format`` (1), ``created_at`` (ISO 8601 UTC), ``backend``, ``method``,
``revision`` (the schema revision of the data), ``key_id`` (the encryption key, from
``LICENSECHAIN_ENCRYPTION_KEYS``), ``size`` and ``sha256`` (hex) of the encrypted part.
The encryption is the store's keyring (``core/sealing.py``): the first key seals, the
header minus its checksum is the associated data, so a header edited to claim another
revision does not decrypt. Restoring needs the key that was first when the backup was made:
keep retired keys offline as long as backups made under them may be restored.

Restore checks, before it touches the target: the magic, the checksum (``BackupCorrupt``),
that the revision is one this code knows (``BackupTooNew`` otherwise), the backend, the
decryption, and that the content is readable. Then, in its one transaction, it refuses a
store in use (``tables_in_use``: any ``lc_*`` table with rows beyond what a first start
writes) unless ``replace``, replaces the target's LicenseChain tables, and migrates an
older revision up to this code's head.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from ..core.errors import InvalidRequest, LicenseChainError
from ..core.sealing import Sealer, UnknownSealingKey
from . import migrate
from .database import Database
from .migrate import TABLE_PREFIX, VERSION_TABLE, alembic_config
from .schema import audit_events, audit_head, named_keys, revocation_counter, signing_keys

MAGIC: Final = b"LCBACKUP1\n"
FORMAT_VERSION: Final = 1
_CONTEXT: Final = b"licensechain-backup-v1:"

Method = Literal["sqlite-backup", "pg_dump", "logical"]
METHODS: Final = ("auto", "native", "logical")


class BackupError(LicenseChainError):
    """A backup or restore could not be done; the message says why."""

    code = "backup_failed"
    status_code = 400
    description = "The backup could not be made or restored."

    def __init__(self, message: str) -> None:
        super().__init__(message, detail=message)


class BackupCorrupt(BackupError):
    code = "backup_corrupt"


class BackupTooNew(BackupError):
    code = "backup_too_new"


@dataclass(frozen=True)
class BackupInfo:
    """A backup's header: what ``backup`` wrote, what ``restore`` read."""

    created_at: str
    backend: str
    method: Method
    revision: str
    key_id: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "created_at": self.created_at,
            "backend": self.backend,
            "method": self.method,
            "revision": self.revision,
            "key_id": self.key_id,
            "size": self.size,
            "sha256": self.sha256,
        }


# -- the file --------------------------------------------------------------------------


def _aad(fields: dict[str, Any]) -> bytes:
    signed = {k: v for k, v in fields.items() if k not in ("size", "sha256")}
    return _CONTEXT + json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()


def seal_backup(
    sealer: Sealer, payload: bytes, *, backend: str, method: Method, revision: str
) -> tuple[BackupInfo, bytes]:
    """The backup file for ``payload``: gzip, then AES-256-GCM under the first key."""
    fields: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "backend": backend,
        "method": method,
        "revision": revision,
        "key_id": sealer.primary_key_id,
    }
    key_id, blob = sealer.encrypt_blob(gzip.compress(payload, 6), context=_aad(fields))
    assert key_id == fields["key_id"]
    info = BackupInfo(
        created_at=fields["created_at"],
        backend=backend,
        method=method,
        revision=revision,
        key_id=key_id,
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
    )
    header = json.dumps(info.as_dict(), sort_keys=True, separators=(",", ":")).encode()
    return info, MAGIC + header + b"\n" + blob


def read_header(data: bytes) -> tuple[BackupInfo, bytes]:
    """The header and the encrypted part of a backup file, checksum checked.

    :raises BackupCorrupt: not a backup file, a malformed header, a failed checksum.
    """
    if not data.startswith(MAGIC):
        raise BackupCorrupt("not a LicenseChain backup file (its first line is wrong)")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise BackupCorrupt("the backup file's header is cut off")
    try:
        fields = json.loads(data[len(MAGIC) : end])
        if fields.get("format") != FORMAT_VERSION:
            raise BackupCorrupt(f"unknown backup format {fields.get('format')!r}")
        info = BackupInfo(
            created_at=str(fields["created_at"]),
            backend=str(fields["backend"]),
            method=fields["method"],
            revision=str(fields["revision"]),
            key_id=str(fields["key_id"]),
            size=int(fields["size"]),
            sha256=str(fields["sha256"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupCorrupt(f"the backup file's header is unreadable: {exc}") from None
    blob = data[end + 1 :]
    if len(blob) != info.size or hashlib.sha256(blob).hexdigest() != info.sha256:
        raise BackupCorrupt(
            "the backup file's checksum does not match its content: it is damaged or "
            "truncated; nothing was restored"
        )
    return info, blob


def open_backup(sealer: Sealer, data: bytes) -> tuple[BackupInfo, bytes]:
    """Header and payload of a backup file: checksum, known revision, then decryption.

    :raises BackupCorrupt: see ``read_header``; or it does not decrypt (wrong key for its
        id, or an edited header).
    :raises BackupTooNew: its schema revision is unknown to this code (a newer release).
    :raises UnknownSealingKey: its key id is not configured.
    """
    info, blob = read_header(data)
    if not _known_revision(info.revision):
        raise BackupTooNew(
            f"the backup is at schema revision {info.revision}, which this version of "
            f"flask-licensechain does not know (its newest is {migrate.head_revision()}): "
            "restore it with the release that made it"
        )
    try:
        fields = info.as_dict()
        packed = sealer.decrypt_blob(info.key_id, blob, context=_aad(fields))
    except UnknownSealingKey as exc:
        raise BackupError(
            f"the backup was encrypted under key id {info.key_id!r}, which is not in "
            "LICENSECHAIN_ENCRYPTION_KEYS"
        ) from exc
    except LicenseChainError as exc:
        raise BackupCorrupt(
            f"the backup does not decrypt under key {info.key_id!r}: wrong key for that id, "
            "or the file was altered (configure the key the backup was made under, e.g. "
            "LICENSECHAIN_ENCRYPTION_KEY from the old instance's licensechain.key)"
        ) from exc
    return info, gzip.decompress(packed)


def _known_revision(revision: str) -> bool:
    scripts = ScriptDirectory.from_config(alembic_config(None))
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


# -- making one --------------------------------------------------------------------------


def choose_method(db: Database, requested: str = "auto") -> Method:
    """The method ``backup`` uses: ``requested`` is ``auto``, ``native`` or ``logical``.

    :raises BackupError: ``native`` asked on PostgreSQL without ``pg_dump`` on ``PATH``, or
        an unknown method.
    """
    if requested not in METHODS:
        raise BackupError(f"unknown backup method {requested!r}: one of {', '.join(METHODS)}")
    if db.is_sqlite:
        return "logical" if requested == "logical" else "sqlite-backup"
    if requested == "logical":
        return "logical"
    if shutil.which("pg_dump") and shutil.which("pg_restore"):
        return "pg_dump"
    if requested == "native":
        raise BackupError("pg_dump and pg_restore are not on PATH")
    return "logical"


def backup(db: Database, sealer: Sealer, path: Path, *, method: str = "auto") -> BackupInfo:
    """Write an encrypted backup of the store to ``path`` (mode 0600, replaced atomically).

    :raises BackupError: the method failed (``pg_dump``'s message included).
    :raises Unavailable: the store is down.
    """
    chosen = choose_method(db, method)
    if chosen == "sqlite-backup":
        payload, revision = _sqlite_dump(db)
    elif chosen == "pg_dump":
        payload, revision = _pg_dump(db)
    else:
        payload, revision = _logical_dump(db)
    info, data = seal_backup(
        sealer, payload, backend=db.engine.dialect.name, method=chosen, revision=revision
    )
    _write_private(path, data)
    return info


def _write_private(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _private_tempdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="licensechain-backup-") as where:
        os.chmod(where, 0o700)
        yield Path(where)


def _raw_sqlite(conn: sa.Connection) -> sqlite3.Connection:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _sqlite_revision(copy: sqlite3.Connection) -> str:
    try:
        row = copy.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()  # noqa: S608
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the database holds no LicenseChain schema: {exc}") from None
    if row is None:
        raise BackupError("the database records no LicenseChain schema revision")
    return str(row[0])


def _sqlite_dump(db: Database) -> tuple[bytes, str]:
    with _private_tempdir() as where:
        target = where / "copy.db"
        with db.engine.connect() as conn:
            copy = sqlite3.connect(target)
            try:
                _raw_sqlite(conn).backup(copy)
                revision = _sqlite_revision(copy)
            finally:
                copy.close()
        return target.read_bytes(), revision


def _libpq(db: Database) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment carrying it (never argv)."""
    url = db.engine.url
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str], **kwargs: Any) -> bytes:
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=3600, **kwargs)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{command[0]} failed: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BackupError(f"{command[0]} failed: {' '.join(message[-3:])}")
    return bytes(done.stdout)


def _pg_dump(db: Database) -> tuple[bytes, str]:
    before = migrate.status(db).revision
    url, env = _libpq(db)
    dump = _run(
        [
            "pg_dump",
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--table={TABLE_PREFIX}*",
            f"--dbname={url}",
        ],
        env,
    )
    after = migrate.status(db).revision
    if before is None or before != after:
        raise BackupError("the schema changed (or has no revision) while it was dumped")
    return dump, before


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _lc_tables(conn: sa.Connection) -> sa.MetaData:
    found = sa.MetaData()
    names = [n for n in sa.inspect(conn).get_table_names() if n.startswith(TABLE_PREFIX)]
    found.reflect(conn, only=names)
    return found


def _logical_dump(db: Database) -> tuple[bytes, str]:
    tables: dict[str, Any] = {}
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn.execution_options(licensechain_sqlite_begin="deferred")
        else:
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if not db.is_sqlite:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            reflected = _lc_tables(conn)
            for table in reflected.sorted_tables:
                columns = [c.name for c in table.columns]
                order = list(table.primary_key.columns) or list(table.columns)
                rows = conn.execute(sa.select(table).order_by(*order)).all()
                tables[table.name] = {
                    "columns": columns,
                    "rows": [[_encode(v) for v in row] for row in rows],
                }
    version = tables.get(VERSION_TABLE, {}).get("rows") or []
    if len(version) != 1:
        raise BackupError("the database records no LicenseChain schema revision")
    revision = str(version[0][0])
    return json.dumps({"tables": tables}, separators=(",", ":")).encode(), revision


# -- restoring one -------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreResult:
    info: BackupInfo
    migrated_from: str | None
    revision: str


#: Tables whose rows the store writes for itself on its first start (``init``): the schema
#: version, the first signing key, the audit chain's head, the revocation counter, and the
#: named keys made on first use. Rows there alone do not put a store in use.
_BOOKKEEPING: Final = frozenset(
    {
        VERSION_TABLE,
        signing_keys.name,
        audit_head.name,
        revocation_counter.name,
        named_keys.name,
    }
)
#: The audit events of the signing keys made or imported at start (``services/signing_keys``).
_START_UP_ACTIONS: Final = ("signing_key.create", "signing_key.rotate")

#: Prepares a backup's content outside the target, then loads it into the restore's
#: transaction (the connection of ``migrate.schema_transaction``).
_Loader = Callable[[sa.Connection], None]


def tables_in_use(conn: sa.Connection) -> list[str]:
    """The LicenseChain tables (sorted names) holding rows other than bookkeeping
    (``_BOOKKEEPING``; audit events other than the start-up's signing-key events).

    A store is empty when this is ``[]``: what ``init`` leaves. Apps, licenses, API keys,
    webhook endpoints, console users, analytics, a longer audit log: all count.
    """
    used: list[str] = []
    names = (n for n in sa.inspect(conn).get_table_names() if n.startswith(TABLE_PREFIX))
    for name in sorted(n for n in names if n not in _BOOKKEEPING):
        query = sa.select(sa.literal(1)).select_from(sa.table(name))
        if name == audit_events.name:
            query = query.where(sa.column("action").not_in(_START_UP_ACTIONS))
        if conn.execute(query.limit(1)).first() is not None:
            used.append(name)
    return used


def store_holds_data(db: Database) -> bool:
    """Whether the store is in use (``tables_in_use``): ``restore`` refuses to replace it
    unless asked (``--replace``). Raises ``Unavailable``."""
    with db.read() as conn:
        return bool(tables_in_use(conn))


def restore(db: Database, sealer: Sealer, path: Path, *, replace: bool = False) -> RestoreResult:
    """Restore the backup at ``path`` into the store, then migrate it to this code's head.

    Every check (checksum, revision, backend, decryption, the dump readable) passes before
    the target is touched. Then one transaction (``migrate.schema_transaction``) refuses a
    store in use unless ``replace`` (``tables_in_use``), drops the LicenseChain tables, loads
    the backup's and migrates them: a failure anywhere rolls it all back. Only ``lc_*``
    tables are touched; the host application's own tables are left as they are.

    :raises BackupCorrupt, BackupTooNew, BackupError: refused or failed; the target is
        unchanged.
    :raises InvalidRequest: the store is in use and ``replace`` is false; unchanged.
    :raises Unavailable: the store is down.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    info, payload = open_backup(sealer, data)
    backend = db.engine.dialect.name
    if info.method != "logical" and info.backend != backend:
        raise BackupError(
            f"a {info.method} backup of a {info.backend} store cannot be restored into {backend}"
        )
    if info.method == "logical" and info.backend != backend:
        raise BackupError(f"a {info.backend} backup cannot be restored into {backend}")
    with _loader(db, info, payload) as load, migrate.schema_transaction(db) as conn:
        used = [] if replace else tables_in_use(conn)
        if used:
            raise InvalidRequest(
                f"the target store is in use (rows in {', '.join(used)}): restore goes into "
                "an empty store (pass --replace to replace its LicenseChain tables)"
            )
        _drop_lc_tables(conn)
        load(conn)
        before, after = migrate.upgrade_on(conn, db)
    migrated = before.revision if before.revision != after.revision else None
    return RestoreResult(info=info, migrated_from=migrated, revision=str(after.revision))


@contextlib.contextmanager
def _loader(db: Database, info: BackupInfo, payload: bytes) -> Iterator[_Loader]:
    """Read and check the backup's content without the target; yield what loads it."""
    if info.method == "sqlite-backup":
        with _private_tempdir() as where:
            source_path = where / "restore.db"
            source_path.write_bytes(payload)
            source = sqlite3.connect(source_path)
            try:
                try:
                    _sqlite_revision(source)  # a LicenseChain database, not any file
                except sqlite3.DatabaseError as exc:
                    raise BackupCorrupt(
                        f"the backup's SQLite database is unreadable: {exc}"
                    ) from None
                yield lambda conn: _sqlite_load(conn, source)
            finally:
                source.close()
    elif info.method == "pg_dump":
        script = _pg_script(payload)
        yield lambda conn: _pg_load(conn, script)
    else:
        tables = _logical_tables(payload)
        yield lambda conn: _logical_load(conn, db, tables, info.revision)


def _drop_lc_tables(conn: sa.Connection) -> None:
    _lc_tables(conn).drop_all(conn)
    if conn.dialect.name == "postgresql":  # a sequence no table owns (serials go with theirs)
        for name in sa.inspect(conn).get_sequence_names():
            if name.startswith(TABLE_PREFIX):
                conn.execute(sa.schema.DropSequence(sa.Sequence(name)))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_load(conn: sa.Connection, source: sqlite3.Connection) -> None:
    """Copy the ``lc_*`` tables (their rows, indexes, triggers, AUTOINCREMENT counters) of
    the backup's database file into the target, inside ``conn``'s transaction. The rest of
    the file (a host application's tables when it was backed up) is not read."""
    target = _raw_sqlite(conn)
    try:
        objects = source.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND type IN ('table', 'index', 'trigger') "
            "ORDER BY type = 'trigger', type = 'index', rowid"
        ).fetchall()
        ours = [row for row in objects if str(row[2]).startswith(TABLE_PREFIX)]
        for _, _, _, sql in ours:
            target.execute(sql)
        for kind, name, _, _ in ours:
            if kind != "table":
                continue
            rows = source.execute(f"SELECT * FROM {_quoted(name)}")  # noqa: S608
            columns = ", ".join(_quoted(c[0]) for c in rows.description)
            marks = ", ".join("?" for _ in rows.description)
            insert = f"INSERT INTO {_quoted(name)} ({columns}) VALUES ({marks})"  # noqa: S608
            target.executemany(insert, rows)
        has_sequence = source.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).fetchone()
        if has_sequence:
            counters = source.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
            for name, seq in counters:
                if str(name).startswith(TABLE_PREFIX):
                    target.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
                    target.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq)
                    )
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the restore failed, nothing was changed: {exc}") from None


def _pg_script(payload: bytes) -> bytes:
    """The ``pg_dump`` archive as the SQL script ``pg_restore`` makes of it (no database
    connection): an archive ``pg_restore`` cannot read is refused before the target is
    touched."""
    with _private_tempdir() as where:
        dump = where / "restore.dump"
        dump.write_bytes(payload)
        return _run(
            ["pg_restore", "--no-owner", "--no-privileges", "--file=-", str(dump)],
            dict(os.environ),
        )


#: A ``COPY ... FROM stdin;`` line of a ``pg_restore`` script; its rows follow, up to ``\.``.
_COPY_LINE: Final = re.compile(rb"^COPY [^\n]+ FROM stdin;$")
#: ``psql`` meta-commands ``pg_restore`` writes around a script (CVE-2025-8714): no-ops here.
_META_LINES: Final = (b"\\restrict ", b"\\unrestrict ")


def _pg_load(conn: sa.Connection, script: bytes) -> None:
    """Run a ``pg_restore`` script in ``conn``'s transaction (psycopg: the statements
    between ``COPY`` blocks in one simple query, each ``COPY``'s rows through
    ``Cursor.copy``), then ``RESET ALL``: the script's ``SET``s (``search_path`` emptied...)
    must not outlive it on this connection, nor reach the migration that follows.

    :raises BackupCorrupt: a ``COPY`` block without its end, or a ``psql`` meta-command
        this does not know.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    lines = iter(script.split(b"\n"))
    pending: list[bytes] = []
    with driver.cursor() as cursor:

        def flush() -> None:
            if any(line.strip() and not line.startswith(b"--") for line in pending):
                cursor.execute(b"\n".join(pending))
            pending.clear()

        for line in lines:
            if _COPY_LINE.match(line):
                flush()
                with cursor.copy(line) as copy:
                    for row in lines:
                        if row == b"\\.":
                            break
                        copy.write(row + b"\n")
                    else:
                        raise BackupCorrupt("the backup's dump ends inside a table's rows")
            elif line.startswith(b"\\"):
                if not line.startswith(_META_LINES):
                    raise BackupCorrupt("the backup's dump holds a command restore does not run")
            else:
                pending.append(line)
        flush()
        cursor.execute("RESET ALL")


def _decode(value: Any, column: sa.Column[Any]) -> Any:
    if value is None:
        return None
    if isinstance(column.type, sa.LargeBinary):
        return base64.b64decode(value)
    if isinstance(column.type, sa.DateTime) and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _logical_tables(payload: bytes) -> dict[str, Any]:
    try:
        tables: dict[str, Any] = json.loads(payload)["tables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupCorrupt(f"the backup's payload is unreadable: {exc}") from None
    return tables


def _logical_load(conn: sa.Connection, db: Database, tables: dict[str, Any], revision: str) -> None:
    """Migrate the emptied target to the backup's ``revision`` and insert its rows
    (foreign-key order), in ``conn``'s transaction."""
    migrate.upgrade_on(conn, db, revision)
    target = _lc_tables(conn)
    for table in target.sorted_tables:
        if table.name == VERSION_TABLE or table.name not in tables:
            continue
        conn.execute(sa.delete(table))  # what migrating an empty store put there
        columns = tables[table.name]["columns"]
        rows = [
            {name: _decode(v, table.c[name]) for name, v in zip(columns, row, strict=True)}
            for row in tables[table.name]["rows"]
        ]
        if rows:
            conn.execute(sa.insert(table), rows)
        if not db.is_sqlite:
            for column in table.primary_key.columns:
                if isinstance(column.type, sa.Integer):
                    _advance_sequence(conn, table, column)


def _advance_sequence(conn: sa.Connection, table: sa.Table, column: sa.Column[Any]) -> None:
    """Move a PostgreSQL serial column's sequence past the restored ids (no-op without one)."""
    sequence = conn.execute(
        sa.select(sa.func.pg_get_serial_sequence(table.name, column.name))
    ).scalar()
    if sequence is None:
        return
    highest = conn.execute(sa.select(sa.func.max(column))).scalar() or 0
    conn.execute(sa.select(sa.func.setval(sequence, int(highest) + 1, False)))


__all__ = [
    "METHODS",
    "BackupCorrupt",
    "BackupError",
    "BackupInfo",
    "BackupTooNew",
    "RestoreResult",
    "backup",
    "choose_method",
    "open_backup",
    "read_header",
    "restore",
    "seal_backup",
    "store_holds_data",
    "tables_in_use",
]
