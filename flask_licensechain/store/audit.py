"""Audit events: who did what to which object, append-only."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .. import field_limits as limits
from . import validation as check
from .changes import Actor, Change
from .database import Database
from .records import AuditRecord
from .schema import audit_events


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=int(row.id),
        action=row.action,
        actor=row.actor,
        target=row.target,
        data=dict(row.data),
        created_at=row.created_at,
    )


class AuditRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        values = {
            "action": check.required_text(action, "action"),
            "actor": check.optional_text(actor, "actor"),
            "target": check.optional_text(target, "target"),
            "data": check.metadata(data, "data"),
            "created_at": datetime.now(UTC),
        }
        with self._db.write() as conn:
            conn.execute(sa.insert(audit_events).values(**values))

    def append(self, conn: sa.Connection, actor: Actor, change: Change) -> None:
        """The audit log's change listener: write ``change`` in the unit's transaction."""
        values = {
            "action": change.action,
            "actor": actor.id,
            "target": change.target,
            "data": check.metadata(dict(change.data), "data"),
            "created_at": datetime.now(UTC),
        }
        conn.execute(sa.insert(audit_events).values(**values))

    def list(self, limit: int = 100) -> builtins.list[AuditRecord]:
        """Newest first."""
        limit = check.integer(limit, "limit", minimum=1, maximum=limits.AUDIT_PAGE)
        statement = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        with self._db.single() as conn:
            rows = conn.execute(statement).all()
        return [_record(row) for row in rows]
