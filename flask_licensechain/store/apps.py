"""Apps: the products that licenses are sold for, each with a seller tier."""

from __future__ import annotations

import builtins
import dataclasses
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa

from .. import field_limits as limits
from ..core.contract import SELLER_TIERS
from ..core.errors import Conflict, InvalidRequest, NotFound
from ..roles import ENVIRONMENTS
from . import validation as check
from .api_keys import detach_app
from .database import Database
from .records import AppRecord
from .schema import apps, licenses

_SLUG_MAX = 64
_SLUG_ATTEMPTS = 5
_SELECT = sa.select(apps)


def app_record(row: Any) -> AppRecord:
    return AppRecord(
        id=row.id,
        name=row.name,
        slug=row.slug,
        description=row.description,
        tier=row.tier,
        created_at=row.created_at,
        updated_at=row.updated_at,
        webhook_url=row.webhook_url,
        allowed_origins=tuple(row.allowed_origins or ()),
        mode=row.mode,
    )


@dataclass(frozen=True, slots=True)
class AppScope:
    """The apps a reader may see: those in ``mode`` (``live``/``test``; ``None``: both) and,
    when ``app_ids`` is given, only those. ``unassigned``: also rows tied to no app (an
    empty or NULL app id: verifications of unknown keys, events of the whole server), which
    only a reader of every live app sees. An API key's scope is its environment and its app
    restriction (``api/auth.py``); the CLI sees everything (``EVERY_APP``)."""

    mode: str | None = None
    app_ids: frozenset[str] | None = None
    unassigned: bool = True

    def clause(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """The SQL condition on ``column`` (any column holding an app id: licenses, audit
        events, webhooks, verification counts) that keeps to this scope."""
        conditions: builtins.list[sa.ColumnElement[bool]] = []
        if self.app_ids is not None:
            conditions.append(column.in_(sorted(self.app_ids)))
        if self.mode is not None:
            conditions.append(column.in_(sa.select(apps.c.id).where(apps.c.mode == self.mode)))
        if not conditions:
            return sa.true() if self.unassigned else sa.and_(column.is_not(None), column != "")
        scoped = sa.and_(*conditions)
        if self.unassigned:
            return sa.or_(column.is_(None), column == "", scoped)
        return scoped

    def allows(self, app_id: str, mode: str | None) -> bool:
        """Whether an app of that id and ``mode`` (``None``: no such app) is in scope."""
        if mode is None or (self.mode is not None and mode != self.mode):
            return False
        return self.app_ids is None or app_id in self.app_ids


EVERY_APP: Final = AppScope()
#: app ids whose mode this process remembers (modes never change: no invalidation)
_MODE_CACHE_SIZE: Final = 100_000


def check_mode(value: object) -> str:
    """``live`` or ``test``; ``InvalidRequest`` otherwise."""
    if value not in ENVIRONMENTS:
        raise InvalidRequest("mode must be 'live' or 'test'.")
    return str(value)


def _tier(value: object) -> str:
    if value not in SELLER_TIERS:
        raise InvalidRequest(f"tier must be one of: {', '.join(SELLER_TIERS)}.")
    return str(value)


#: updatable field -> validator of its new value
_UPDATABLE: Final[Mapping[str, Callable[[Any], Any]]] = {
    "name": lambda v: check.required_text(v, "name").strip(),
    "description": lambda v: check.optional_text(v, "description", max_length=limits.DESCRIPTION),
    "tier": _tier,
    "webhook_url": check.webhook_url,
    "allowed_origins": check.origins,
}


def slugify(name: str) -> str:
    """Lower-case ASCII words joined by ``-``; ``app`` when nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:_SLUG_MAX].rstrip("-") or "app"


def _candidate_slugs(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    for number in range(2, len(taken) + 3):
        candidate = f"{base[: _SLUG_MAX - 8]}-{number}"
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: one of len(taken) + 1 numbers is free")


class AppRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._modes: dict[str, str] = {}

    def mode_of(self, app_id: str) -> str | None:
        """The app's mode (``live``/``test``), or ``None`` when there is no such app.
        Remembered per process once read: an app's mode never changes."""
        mode = self._modes.get(app_id)
        if mode is not None:
            return mode
        if not check.is_lookup(app_id):
            return None
        with self._db.single() as conn:
            mode = conn.scalar(sa.select(apps.c.mode).where(apps.c.id == app_id))
        if mode is not None:
            if len(self._modes) >= _MODE_CACHE_SIZE:
                self._modes.clear()
            self._modes[app_id] = mode
        return mode

    def create(
        self,
        name: str,
        description: str | None = None,
        tier: str = "free",
        *,
        webhook_url: str | None = None,
        allowed_origins: Iterable[str] | None = None,
        mode: str = "live",
    ) -> AppRecord:
        """A new app in ``mode`` (``live`` or ``test``, for good). ``InvalidRequest`` for a
        bad field, ``Conflict`` when no slug is free."""
        name = _UPDATABLE["name"](name)
        extra = {
            "description": _UPDATABLE["description"](description),
            "tier": _tier(tier),
            "webhook_url": check.webhook_url(webhook_url),
            "allowed_origins": check.origins(allowed_origins),
            "mode": check_mode(mode),
        }
        base = slugify(name)
        for attempt in range(_SLUG_ATTEMPTS):
            try:
                return self._insert(name, extra, base, randomize=attempt > 0)
            except Conflict:
                # Another writer took the same slug between our read and our insert
                # (PostgreSQL only; SQLite writers are serialized by BEGIN IMMEDIATE).
                continue
        raise Conflict("Could not find a free slug for this app name.")

    def _insert(self, name: str, extra: dict[str, Any], base: str, *, randomize: bool) -> AppRecord:
        now = datetime.now(UTC)
        with self._db.write(savepoint=True) as conn:  # create() retries a lost slug
            if randomize:
                slug = f"{base[: _SLUG_MAX - 9]}-{secrets.token_hex(4)}"
            else:
                # Every slug the candidates could collide with starts with this stem.
                stem = base[: _SLUG_MAX - 8]
                escaped = stem.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                taken = set(
                    conn.scalars(
                        sa.select(apps.c.slug).where(apps.c.slug.like(f"{escaped}%", escape="\\"))
                    )
                )
                slug = _candidate_slugs(base, taken)
            record = AppRecord(
                id=check.new_id("app"),
                name=name,
                slug=slug,
                created_at=now,
                updated_at=now,
                **extra,
            )
            row = dataclasses.asdict(record)
            row["allowed_origins"] = list(record.allowed_origins)
            conn.execute(sa.insert(apps).values(**row))
        return record

    def get(self, app_id: str) -> AppRecord | None:
        if not check.is_lookup(app_id):
            return None
        with self._db.single() as conn:
            row = conn.execute(_SELECT.where(apps.c.id == app_id)).first()
        return None if row is None else app_record(row)

    def list(
        self,
        *,
        page: int | None = None,
        limit: int | None = None,
        app_id: str | None = None,
        scope: AppScope = EVERY_APP,
    ) -> builtins.list[AppRecord]:
        """Apps, oldest first; one page of ``limit`` when both are given; only ``app_id``
        when given, only those in ``scope``."""
        statement = _SELECT.order_by(apps.c.created_at, apps.c.id).where(*_in_scope(scope))
        if app_id is not None:
            statement = statement.where(apps.c.id == check.text(app_id, "app_id"))
        if page is not None and limit is not None:
            page = check.integer(page, "page", minimum=1, maximum=10**9)
            limit = check.integer(limit, "limit", minimum=1, maximum=1000)
            statement = statement.limit(limit).offset((page - 1) * limit)
        with self._db.single() as conn:
            rows = conn.execute(statement).all()
        return [app_record(row) for row in rows]

    def count(self, *, app_id: str | None = None, scope: AppScope = EVERY_APP) -> int:
        statement = sa.select(sa.func.count()).select_from(apps).where(*_in_scope(scope))
        if app_id is not None:
            statement = statement.where(apps.c.id == check.text(app_id, "app_id"))
        with self._db.single() as conn:
            return int(conn.scalar(statement) or 0)

    def all_allowed_origins(self) -> frozenset[str]:
        """The union of every app's ``allowed_origins`` (the public endpoints' CORS list)."""
        with self._db.single() as conn:
            lists = conn.scalars(sa.select(apps.c.allowed_origins)).all()
        return frozenset(entry for listed in lists for entry in (listed or ()))

    def update(self, app_id: str, **changes: Any) -> AppRecord | None:
        """Change the given fields (name, description, tier, webhook_url, allowed_origins).

        ``None`` when there is no such app; ``InvalidRequest`` for an unknown field or a bad
        value. The slug stays: URLs and integrations may use it.
        """
        unknown = sorted(set(changes) - set(_UPDATABLE))
        if unknown:
            raise InvalidRequest(f"Unknown app field(s): {', '.join(unknown)}.")
        values = {name: _UPDATABLE[name](value) for name, value in changes.items()}
        if "allowed_origins" in values:
            values["allowed_origins"] = list(values["allowed_origins"])
        if not check.is_lookup(app_id):
            return None
        values["updated_at"] = datetime.now(UTC)
        with self._db.write() as conn:
            result = conn.execute(sa.update(apps).where(apps.c.id == app_id).values(**values))
            if result.rowcount == 0:
                return None
            row = conn.execute(_SELECT.where(apps.c.id == app_id)).one()
        return app_record(row)

    def delete(self, app_id: str) -> AppRecord:
        """Delete an app whose licenses are all revoked (they go with it), revoke the API
        keys limited to it alone and take it out of the other keys' sets, in one transaction.

        ``NotFound`` when there is no such app; ``Conflict`` while a license of the app is not
        revoked (revoke it first: that denylists its outstanding tokens).
        """
        if not check.is_lookup(app_id):
            raise NotFound("App not found.")
        with self._db.write() as conn:
            # The row lock makes a concurrent license insert (its foreign-key check needs a
            # share lock on this row) wait, then fail: no license slips in under the delete.
            row = conn.execute(_SELECT.where(apps.c.id == app_id).with_for_update()).first()
            if row is None:
                raise NotFound("App not found.")
            live = conn.scalar(
                sa.select(sa.func.count())
                .select_from(licenses)
                .where(licenses.c.app_id == app_id, licenses.c.status != "REVOKED")
            )
            if live:
                raise Conflict(
                    f"The app still has {live} license(s) that are not revoked; revoke them first."
                )
            detach_app(conn, app_id, datetime.now(UTC))
            conn.execute(sa.delete(licenses).where(licenses.c.app_id == app_id))
            conn.execute(sa.delete(apps).where(apps.c.id == app_id))
        return app_record(row)


def _in_scope(scope: AppScope) -> builtins.list[sa.ColumnElement[bool]]:
    conditions: builtins.list[sa.ColumnElement[bool]] = []
    if scope.mode is not None:
        conditions.append(apps.c.mode == scope.mode)
    if scope.app_ids is not None:
        conditions.append(apps.c.id.in_(sorted(scope.app_ids)))
    return conditions
