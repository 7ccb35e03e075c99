"""Apps: the products that licenses are sold for, each with a seller tier."""

from __future__ import annotations

import builtins
import dataclasses
import re
import secrets
import unicodedata
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .. import field_limits as limits
from ..core.contract import SELLER_TIERS
from ..core.errors import Conflict, InvalidRequest
from . import validation as check
from .database import Database
from .records import AppRecord
from .schema import apps

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
    )


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

    def create(self, name: str, description: str | None = None, tier: str = "free") -> AppRecord:
        name = check.required_text(name, "name").strip()
        description = check.optional_text(description, "description", max_length=limits.DESCRIPTION)
        if tier not in SELLER_TIERS:
            raise InvalidRequest(f"tier must be one of: {', '.join(SELLER_TIERS)}.")
        base = slugify(name)
        for attempt in range(_SLUG_ATTEMPTS):
            try:
                return self._insert(name, description, tier, base, randomize=attempt > 0)
            except Conflict:
                # Another writer took the same slug between our read and our insert
                # (PostgreSQL only; SQLite writers are serialized by BEGIN IMMEDIATE).
                continue
        raise Conflict("Could not find a free slug for this app name.")

    def _insert(
        self, name: str, description: str | None, tier: str, base: str, *, randomize: bool
    ) -> AppRecord:
        now = datetime.now(UTC)
        with self._db.write() as conn:
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
                description=description,
                tier=tier,
                created_at=now,
                updated_at=now,
            )
            conn.execute(sa.insert(apps).values(**dataclasses.asdict(record)))
        return record

    def get(self, app_id: str) -> AppRecord | None:
        if not check.is_lookup(app_id):
            return None
        with self._db.single() as conn:
            row = conn.execute(_SELECT.where(apps.c.id == app_id)).first()
        return None if row is None else app_record(row)

    def list(self) -> builtins.list[AppRecord]:
        with self._db.single() as conn:
            rows = conn.execute(_SELECT.order_by(apps.c.created_at, apps.c.id)).all()
        return [app_record(row) for row in rows]
