"""Webhooks: endpoints, the outbox (deliveries of events) and their attempts, and the
license expiries already announced.

Revision ID: 0006
Revises: 0005

- ``lc_webhook_endpoints``: destinations (an app's, or every app's), subscribed event
  types, the sealed signing secret (and the previous one during a rotation's overlap),
  the failing/disabled state.
- ``lc_webhook_deliveries``: the outbox: one row per event and endpoint, with the event's
  exact JSON payload, its lease (``next_attempt_at``, ``lease_owner``) and last outcome.
- ``lc_webhook_attempts``: every attempt (status code, latency, error).
- ``lc_license_expirations``: the sweeper's record of expiries already announced.

Data: an app with a ``webhook_url`` gets its endpoint (every event type; its signing secret
is made at first use, since the encryption key is not at hand here).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_UTC = sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite")
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "lc_webhook_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("app_id", sa.String(40), sa.ForeignKey("lc_apps.id", ondelete="CASCADE")),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary),
        sa.Column("sealed_previous_secret", sa.LargeBinary),
        sa.Column("previous_secret_expires_at", _UTC),
        sa.Column("failing_since", _UTC),
        sa.Column("disabled_at", _UTC),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_index("ix_lc_webhook_endpoints_app", "lc_webhook_endpoints", ["app_id"])
    op.create_table(
        "lc_webhook_deliveries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "endpoint_id",
            sa.String(40),
            sa.ForeignKey("lc_webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("app_id", sa.String(40)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _UTC),
        sa.Column("lease_owner", sa.String(40)),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("last_attempt_at", _UTC),
        sa.Column("created_at", _UTC, nullable=False),
    )
    op.create_index(
        "ix_lc_webhook_deliveries_due", "lc_webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_lc_webhook_deliveries_endpoint", "lc_webhook_deliveries", ["endpoint_id", "id"]
    )
    op.create_table(
        "lc_webhook_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            _ID,
            sa.ForeignKey("lc_webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempted_at", _UTC, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_lc_webhook_attempts_delivery", "lc_webhook_attempts", ["delivery_id"])
    op.create_table(
        "lc_license_expirations",
        sa.Column(
            "license_id",
            sa.String(40),
            sa.ForeignKey("lc_licenses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("expires_at", _UTC, nullable=False),
        sa.Column("recorded_at", _UTC, nullable=False),
    )
    _endpoints_of_apps()


def _endpoints_of_apps() -> None:
    conn = op.get_bind()
    apps = sa.table("lc_apps", sa.column("id", sa.String), sa.column("webhook_url", sa.Text))
    endpoints = sa.table(
        "lc_webhook_endpoints",
        sa.column("id", sa.String),
        sa.column("app_id", sa.String),
        sa.column("url", sa.Text),
        sa.column("events", sa.JSON),
        sa.column("source", sa.String),
        sa.column("enabled", sa.Boolean),
        sa.column("created_at", _UTC),
        sa.column("updated_at", _UTC),
    )
    now: object = datetime.now(UTC)
    if conn.dialect.name == "sqlite":  # the store's fixed-width UTC text
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = conn.execute(
        sa.select(apps.c.id, apps.c.webhook_url).where(apps.c.webhook_url.is_not(None))
    ).all()
    if rows:
        conn.execute(
            sa.insert(endpoints),
            [
                {
                    "id": str(uuid.uuid4()),
                    "app_id": row.id,
                    "url": row.webhook_url,
                    "events": ["*"],
                    "source": "app",
                    "enabled": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for row in rows
            ],
        )


def downgrade() -> None:
    op.drop_table("lc_license_expirations")
    op.drop_index("ix_lc_webhook_attempts_delivery", "lc_webhook_attempts")
    op.drop_table("lc_webhook_attempts")
    op.drop_index("ix_lc_webhook_deliveries_endpoint", "lc_webhook_deliveries")
    op.drop_index("ix_lc_webhook_deliveries_due", "lc_webhook_deliveries")
    op.drop_table("lc_webhook_deliveries")
    op.drop_index("ix_lc_webhook_endpoints_app", "lc_webhook_endpoints")
    op.drop_table("lc_webhook_endpoints")
