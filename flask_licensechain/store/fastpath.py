"""A Core statement compiled once and run straight on a pooled DBAPI connection.

For the verify hot path only (``LicenseRepository.find_for_verification`` and the slot
read of ``bind_device``). This bypasses SQLAlchemy's ``Connection``/``Result`` machinery:
the statement is built with Core, compiled once per dialect, and executed on the driver's
cursor from ``Engine.raw_connection()``; the values still go through the columns' own
result processors, so they come back exactly as the Core path returns them (a test checks
both paths answer alike). On PostgreSQL the statement runs in autocommit: one round trip,
no BEGIN/ROLLBACK. It relies on ``SQLCompiler.positiontup``, ``Dialect.loaded_dbapi``,
``Dialect.is_disconnect`` and ``DBAPIError.instance`` to bind and to fail as SQLAlchemy
would.

Why the bypass is kept: ``benchmarks/verify_endpoint/run.py`` runs the whole verify request
both ways side by side (``LicenseRepository.bypass_core = False`` is the public path). The
bypass saved 107-212 µs of CPU per request: 17-25 % of the request without it on SQLite and
15-19 % on PostgreSQL (2 shared cores, load average 6-20, 2026-11-30), above the 10 % that
justifies leaving a library's public API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..core.errors import Unavailable
from .database import Database, translate_error

Row = Sequence[Any]
Decoder = Callable[[Row], dict[str, Any]]


class FastQuery:
    """``statement`` on one database. Parameters must be driver-native values (``str``...).

    ``bypass=False`` runs it through SQLAlchemy's ``Connection`` instead (the public path,
    rows decoded by SQLAlchemy): ``benchmarks/verify_endpoint`` measures the two side by side.
    """

    def __init__(self, statement: sa.Select[Any], db: Database, *, bypass: bool = True) -> None:
        engine = db.engine
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self._db = db
        self._statement = statement
        self._bypass = bypass
        self._engine = engine
        self._sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        columns = statement.selected_columns
        self._index = {str(column.key): position for position, column in enumerate(columns)}
        self._processors: tuple[Callable[[Any], Any] | None, ...] = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) if bypass else None
            for column in columns
        )
        self._autocommit = dialect.name == "postgresql"
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error

    def position(self, key: str) -> int:
        """Where the column ``key`` is in a raw row."""
        return self._index[key]

    def decoder(self, keys: Iterable[str]) -> Decoder:
        """A function that decodes just these columns of a raw row into a dict.

        Joined rows repeat their parent's columns: decoding only what each row adds keeps
        the work per row small.
        """
        picks = tuple((key, self._index[key], self._processors[self._index[key]]) for key in keys)

        def decode(row: Row) -> dict[str, Any]:
            return {
                key: row[index] if process is None else process(row[index])
                for key, index, process in picks
            }

        return decode

    def rows(self, params: Mapping[str, Any]) -> list[Row]:
        """Every row, raw as the driver returns it (decode with ``decoder``).

        Raises ``Unavailable`` when the database cannot be reached, and the store's typed
        error for any other database failure it knows (``translate_error``).
        """
        if not self._bypass:
            with self._db.single() as conn:
                return list(conn.execute(self._statement, params).all())
        bound: Any = params if self._order is None else tuple(params[k] for k in self._order)
        try:
            proxied = self._engine.raw_connection()
        except (sa.exc.SQLAlchemyError, self._dbapi_error) as error:
            # The pool hands connect failures through unwrapped.
            raise Unavailable(detail=f"{type(error).__name__}: {error}") from error
        driver = proxied.dbapi_connection
        cursor = None
        try:
            if self._autocommit:
                driver.autocommit = True  # type: ignore[union-attr]
            cursor = proxied.cursor()
            cursor.execute(self._sql, bound)
            return list(cursor.fetchall())
        except self._dbapi_error as error:
            lost = self._engine.dialect.is_disconnect(error, proxied, cursor)  # type: ignore[arg-type]
            if lost:
                proxied.invalidate(error)
            # Wrapped as SQLAlchemy would, so the one translation table applies.
            wrapped = sa.exc.DBAPIError.instance(
                self._sql, bound, error, self._dbapi_error, connection_invalidated=lost
            )
            translated = translate_error(wrapped)
            if translated is None:
                raise wrapped from error
            raise translated from error
        finally:
            if cursor is not None:
                cursor.close()
            if self._autocommit and proxied.is_valid:
                driver.autocommit = False  # type: ignore[union-attr]
            proxied.close()
