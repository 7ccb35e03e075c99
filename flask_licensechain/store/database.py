"""Engine set-up and the three kinds of transaction the repositories use.

- ``write()``: one transaction that may read then write atomically. On SQLite it starts with
  ``BEGIN IMMEDIATE`` (the write lock up front, so two writers queue on ``busy_timeout``
  instead of failing on a lock upgrade); on PostgreSQL it is a READ COMMITTED transaction in
  which repositories lock rows with ``SELECT ... FOR UPDATE``.
- ``read()``: one consistent snapshot for several statements.
- ``single()``: exactly one statement, no explicit transaction (SQLite: no BEGIN;
  PostgreSQL: autocommit), so the verify hot path costs one round trip.
- ``schema_change(lock_id)``: the transaction migrations run in, one process at a time.
- ``unit()``: a write transaction that the repository calls made inside it join (a unit of
  work, ``store/changes.py``). Inside it ``write()`` is a SAVEPOINT of the unit (so a
  repository's retry after a ``Conflict`` still works on PostgreSQL), and ``read()`` and
  ``single()`` use the unit's connection (they see its uncommitted rows). The join is per
  context (``contextvars``): other threads and greenlets are not affected.

A SQLite database file is created 0600 (``core/private_files.py``): it holds license keys and
customer e-mail addresses.

Database errors leave as the core's typed errors: integrity -> ``Conflict``, bad data ->
``InvalidRequest``, connection or lock trouble -> ``Unavailable``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.pool import StaticPool

from ..core.errors import Conflict, InvalidRequest, LicenseChainError, Unavailable
from ..core.private_files import create_private_file

#: execution option read by the SQLite ``begin`` hook: "immediate", "deferred" or "none"
_SQLITE_BEGIN = "licensechain_sqlite_begin"
DEFAULT_BUSY_TIMEOUT = 5.0
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
#: the unit of work this context is in: (its database, its connection)
_UNIT: contextvars.ContextVar[tuple[Database, sa.Connection] | None] = contextvars.ContextVar(
    "licensechain_unit_of_work", default=None
)


def normalize_url(url: str) -> sa.URL:
    """``postgres://`` and ``postgresql://`` use psycopg 3; other URLs pass through."""
    parsed = sa.make_url(url)
    if parsed.drivername in _POSTGRES_SCHEMES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_store_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> sa.Engine:
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, busy_timeout)
    if backend == "postgresql":
        return sa.create_engine(
            parsed,
            pool_recycle=1800,
            # Fail fast when the server is down: health checks must answer quickly.
            connect_args={"connect_timeout": 5},
        )
    return sa.create_engine(parsed)


def _sqlite_engine(url: sa.URL, busy_timeout: float) -> sa.Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty database.
        engine = sa.create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        if not _is_uri_filename(url):
            # Before SQLite makes it 0644: its -wal, -shm and -journal files copy this mode.
            # A missing folder is not made here (a typo must not grow a new store): SQLite
            # fails to open the file, and the store answers ``Unavailable``.
            with contextlib.suppress(FileNotFoundError):
                create_private_file(Path(str(url.database)))
        engine = sa.create_engine(url)
    timeout_ms = max(0, int(busy_timeout * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: the begin hook emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # Safe with WAL (no corruption on crash) and much cheaper per commit than FULL.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "deferred")
        if mode == "immediate":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif mode == "deferred":
            connection.exec_driver_sql("BEGIN")
        # "none": a single statement runs in SQLite's own implicit transaction.

    return engine


def _is_uri_filename(url: sa.URL) -> bool:
    """``sqlite:///file:...?uri=true``: SQLite parses the name itself; leave it alone."""
    return str(url.query.get("uri", "")).lower() in ("true", "1")


def translate_error(error: exc.SQLAlchemyError) -> LicenseChainError | None:
    """The typed error for a database failure, or ``None`` for a programming error (a bug,
    which must stay visible rather than hide behind a 4xx or 503). ``detail`` keeps the cause
    for logs only."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, exc.IntegrityError):
        return Conflict(detail=detail)
    if isinstance(error, exc.DataError):
        return InvalidRequest("A value is not acceptable to the store.", detail=detail)
    unreachable = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)
    if isinstance(error, unreachable) or (
        isinstance(error, exc.DBAPIError) and error.connection_invalidated
    ):
        return Unavailable(detail=detail)
    return None


class Database:
    """An engine plus the transaction helpers the repositories share."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        if self.is_sqlite:
            self._write_options: dict[str, Any] = {_SQLITE_BEGIN: "immediate"}
            self._read_options: dict[str, Any] = {_SQLITE_BEGIN: "deferred"}
            self._single_options: dict[str, Any] = {_SQLITE_BEGIN: "none"}
        else:
            self._write_options = {}
            self._read_options = {}
            self._single_options = {"isolation_level": "AUTOCOMMIT"}
        _dispose_in_forked_children(engine)

    def _unit_connection(self) -> sa.Connection | None:
        unit = _UNIT.get()
        return unit[1] if unit is not None and unit[0] is self else None

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        conn = self._unit_connection()
        if conn is not None:
            try:
                with conn.begin_nested():
                    yield conn
            except exc.SQLAlchemyError as error:
                _reraise(error)
            return
        with self._transaction(self._write_options) as conn:
            yield conn

    @contextmanager
    def unit(self) -> Iterator[sa.Connection]:
        """One write transaction that ``write()``, ``read()`` and ``single()`` join until it
        ends; committed when the block ends normally, rolled back when it raises. A unit
        inside a unit is the same unit."""
        conn = self._unit_connection()
        if conn is not None:
            yield conn
            return
        with self._transaction(self._write_options) as conn:
            token = _UNIT.set((self, conn))
            try:
                yield conn
            finally:
                _UNIT.reset(token)

    def serialize(self, conn: sa.Connection, lock_id: int) -> None:
        """Queue this write transaction behind any other holding ``lock_id``.

        PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do, a write
        transaction already holds the database's single write lock from BEGIN IMMEDIATE.
        """
        if not self.is_sqlite:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_id)))

    @contextmanager
    def schema_change(self, lock_id: int) -> Iterator[sa.Connection]:
        """One transaction for schema changes, serialized across processes by ``lock_id``.

        PostgreSQL: transactional DDL behind a transaction-scoped advisory lock. SQLite:
        ``BEGIN IMMEDIATE`` (its DDL is transactional too), with foreign keys off while it
        runs: rebuilding a table (how SQLite alters one) must not cascade deletes into the
        tables that refer to it. ``PRAGMA foreign_key_check`` must pass before the commit.
        Raises ``Unavailable`` when the lock or the database cannot be had.
        """
        try:
            with self.engine.connect() as conn:
                if self.is_sqlite:
                    self._set_sqlite_foreign_keys(conn, enabled=False)
                try:
                    conn.execution_options(**self._write_options)
                    with conn.begin():
                        self.serialize(conn, lock_id)
                        yield conn
                        if self.is_sqlite:
                            _check_sqlite_foreign_keys(conn)
                finally:
                    if self.is_sqlite:
                        self._set_sqlite_foreign_keys(conn, enabled=True)
        except exc.SQLAlchemyError as error:
            _reraise(error)

    def _set_sqlite_foreign_keys(self, conn: sa.Connection, *, enabled: bool) -> None:
        # Outside any transaction: SQLite ignores this pragma inside one.
        conn.execution_options(**self._single_options)
        conn.exec_driver_sql(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")
        conn.commit()

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        conn = self._unit_connection()
        if conn is not None:
            yield conn
            return
        with self._transaction(self._read_options) as conn:
            yield conn

    @contextmanager
    def single(self) -> Iterator[sa.Connection]:
        conn = self._unit_connection()
        if conn is not None:
            yield conn
            return
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**self._single_options)
                yield conn
        except exc.SQLAlchemyError as error:
            _reraise(error)

    @contextmanager
    def _transaction(self, options: dict[str, Any]) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                if options:
                    conn.execution_options(**options)
                with conn.begin():
                    yield conn
        except exc.SQLAlchemyError as error:
            _reraise(error)


def _check_sqlite_foreign_keys(conn: sa.Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"schema change left rows with dangling foreign keys: {broken[:5]}")


def _reraise(error: exc.SQLAlchemyError) -> NoReturn:
    translated = translate_error(error)
    if translated is None:
        raise error
    raise translated from error


def _dispose_in_forked_children(engine: sa.Engine) -> None:
    """A forked worker (gunicorn --preload) must not reuse the parent's pooled sockets."""
    ref = weakref.ref(engine)

    def _after_fork() -> None:
        target = ref()
        if target is not None:
            target.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork)
