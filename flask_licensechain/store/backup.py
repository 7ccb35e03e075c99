"""Encrypted backups of the store, and restoring them.

Methods (``backup(..., method="auto")`` picks the first that applies):

- ``sqlite-backup``: SQLite's online backup API (``sqlite3.Connection.backup``) copies the
  whole database file page by page from one read snapshot: consistent while the server
  writes. Restored the same way, over the whole target file.
- ``pg_dump``: PostgreSQL's ``pg_dump --format=custom`` of the ``lc_*`` tables (one
  repeatable-read snapshot, consistent while serving), restored with ``pg_restore
  --single-transaction``. Used when ``pg_dump`` is on ``PATH``.
- ``logical``: otherwise, every ``lc_*`` table read through SQLAlchemy in one snapshot, as
  JSON; restored by migrating the empty target to the backup's revision and inserting the
  rows (foreign-key order), all in one transaction.

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
that the revision is one this code knows (``BackupTooNew`` otherwise), the backend, and the
decryption. Then it replaces the target's LicenseChain tables, and migrates an older
revision up to this code's head.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
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
            "or the file was altered"
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


def store_holds_data(db: Database) -> bool:
    """Whether the store holds an app or a license (restore refuses to replace it unasked)."""
    with db.read() as conn:
        names = set(sa.inspect(conn).get_table_names())
        for name in ("lc_apps", "lc_licenses"):
            if name in names:
                table = sa.table(name)
                if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
                    return True
    return False


def restore(db: Database, sealer: Sealer, path: Path, *, replace: bool = False) -> RestoreResult:
    """Restore the backup at ``path`` into the store, then migrate it to this code's head.

    Every check (checksum, revision, backend, decryption) passes before the target is
    touched. The target must hold no app or license unless ``replace``.

    :raises BackupCorrupt, BackupTooNew, BackupError: refused; the target is unchanged.
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
    if not replace and store_holds_data(db):
        raise InvalidRequest(
            "the target store holds apps or licenses: restore goes into an empty store "
            "(pass --replace to drop its LicenseChain tables first)"
        )
    if info.method == "sqlite-backup":
        _sqlite_restore(db, payload)
    elif info.method == "pg_dump":
        _pg_restore(db, payload)
    else:
        _logical_restore(db, payload, info.revision)
    before, after = migrate.upgrade(db)
    migrated = before.revision if before.revision != after.revision else None
    return RestoreResult(info=info, migrated_from=migrated, revision=str(after.revision))


def _sqlite_restore(db: Database, payload: bytes) -> None:
    with _private_tempdir() as where:
        source_path = where / "restore.db"
        source_path.write_bytes(payload)
        source = sqlite3.connect(source_path)
        try:
            _sqlite_revision(source)  # a LicenseChain database, not any file
            with db.engine.connect() as conn:
                source.backup(_raw_sqlite(conn))
        except sqlite3.DatabaseError as exc:
            raise BackupCorrupt(f"the backup's SQLite database is unreadable: {exc}") from None
        finally:
            source.close()
    db.engine.dispose()  # pooled connections reopen on the restored file


def _drop_lc_tables(conn: sa.Connection) -> None:
    _lc_tables(conn).drop_all(conn)


def _pg_restore(db: Database, payload: bytes) -> None:
    url, env = _libpq(db)
    with db.write() as conn:
        _drop_lc_tables(conn)
    with _private_tempdir() as where:
        dump = where / "restore.dump"
        dump.write_bytes(payload)
        _run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={url}",
                str(dump),
            ],
            env,
        )


def _decode(value: Any, column: sa.Column[Any]) -> Any:
    if value is None:
        return None
    if isinstance(column.type, sa.LargeBinary):
        return base64.b64decode(value)
    if isinstance(column.type, sa.DateTime) and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _logical_restore(db: Database, payload: bytes, revision: str) -> None:
    try:
        tables: dict[str, Any] = json.loads(payload)["tables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupCorrupt(f"the backup's payload is unreadable: {exc}") from None
    with db.write() as conn:
        _drop_lc_tables(conn)
    migrate.upgrade(db, revision)
    with db.write() as conn:
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
]
