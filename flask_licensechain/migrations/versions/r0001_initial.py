"""The first schema: apps, licenses, devices, admin API keys, signing keys, audit events.

Revision ID: 0001
Revises: (none)

Stores created before migrations existed (by ``create_all()``) hold exactly this schema and are
adopted at this revision. Types are spelled out per backend rather than imported from
``store/schema.py``, so this revision stays what it was when the schema module moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# ``UTCDateTime`` as this revision stored it: timestamptz, or fixed-width UTC text on SQLite.
_UTC = sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lc_apps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("slug", sa.String(80), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_table(
        "lc_licenses",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "app_id",
            sa.String(40),
            sa.ForeignKey("lc_apps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(40), nullable=False, unique=True),
        sa.Column("plan", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_to", sa.Text),
        sa.Column("issued_email", sa.Text),
        sa.Column("expires_at", _UTC),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("max_devices", sa.Integer, nullable=False),
        sa.Column("require_hwuid", sa.Boolean, nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    op.create_index("ix_lc_licenses_app_created", "lc_licenses", ["app_id", "created_at"])
    op.create_index("ix_lc_licenses_created", "lc_licenses", ["created_at"])
    op.create_table(
        "lc_devices",
        sa.Column(
            "license_id",
            sa.String(40),
            sa.ForeignKey("lc_licenses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("hwuid", sa.Text, primary_key=True),
        sa.Column("bound_at", _UTC, nullable=False),
        sa.Column("last_seen_at", _UTC, nullable=False),
    )
    op.create_table(
        "lc_api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("environment", sa.String(8), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("last_used_at", _UTC),
        sa.Column("revoked_at", _UTC),
    )
    op.create_table(
        "lc_signing_keys",
        sa.Column("kid", sa.String(128), primary_key=True),
        sa.Column("public_jwk", sa.JSON, nullable=False),
        sa.Column("sealed_private_key", sa.LargeBinary),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("retired_at", _UTC),
        sa.Column("expires_at", _UTC),
    )
    op.create_index(
        "ux_lc_signing_keys_one_active",
        "lc_signing_keys",
        ["state"],
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_table(
        "lc_audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("actor", sa.Text),
        sa.Column("target", sa.Text),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lc_audit_events")
    op.drop_index("ux_lc_signing_keys_one_active", table_name="lc_signing_keys")
    op.drop_table("lc_signing_keys")
    op.drop_table("lc_api_keys")
    op.drop_table("lc_devices")
    op.drop_index("ix_lc_licenses_created", table_name="lc_licenses")
    op.drop_index("ix_lc_licenses_app_created", table_name="lc_licenses")
    op.drop_table("lc_licenses")
    op.drop_table("lc_apps")
