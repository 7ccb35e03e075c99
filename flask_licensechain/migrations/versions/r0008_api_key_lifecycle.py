"""API-key lifecycle (description, role, expiry, usage, rotation), app sets, app modes.

Revision ID: 0008
Revises: 0006

- ``lc_apps.mode``: ``live`` or ``test`` (existing apps are live): lc_live_ keys act only on
  live apps, lc_test_ keys only on test apps.
- ``lc_api_keys``: ``description``, ``role``, ``expires_at``, ``last_used_ip``,
  ``usage_count`` (existing keys: 0), and after a rotation ``previous_key_hash`` with
  ``previous_expires_at`` (the old secret's grace period).
- ``lc_api_keys.app_ids`` (a JSON list, NULL: every app) replaces ``app_id``: a key limited
  to one app is limited to the set of that one app. The downgrade keeps the first app of a
  set (a key of several apps then sees one of them: narrower, never wider).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_UTC = sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("lc_apps") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(8), nullable=False, server_default=sa.text("'live'"))
        )
    with op.batch_alter_table("lc_apps") as batch:
        batch.alter_column("mode", existing_type=sa.String(8), server_default=None)

    with op.batch_alter_table("lc_api_keys") as batch:
        batch.add_column(sa.Column("description", sa.Text, nullable=True))
        batch.add_column(sa.Column("previous_key_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("previous_expires_at", _UTC, nullable=True))
        batch.add_column(sa.Column("role", sa.String(20), nullable=True))
        batch.add_column(sa.Column("app_ids", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("expires_at", _UTC, nullable=True))
        batch.add_column(sa.Column("last_used_ip", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("usage_count", sa.BigInteger, nullable=False, server_default=sa.text("0"))
        )
        batch.create_unique_constraint("uq_lc_api_keys_previous_key_hash", ["previous_key_hash"])
    conn = op.get_bind()
    keys = sa.table(
        "lc_api_keys", sa.column("id"), sa.column("app_id"), sa.column("app_ids", sa.JSON)
    )
    for key_id, app_id in conn.execute(
        sa.select(keys.c.id, keys.c.app_id).where(keys.c.app_id.is_not(None))
    ).all():
        conn.execute(sa.update(keys).where(keys.c.id == key_id).values(app_ids=[app_id]))
    with op.batch_alter_table("lc_api_keys") as batch:
        batch.alter_column("usage_count", existing_type=sa.BigInteger, server_default=None)
        batch.drop_index("ix_lc_api_keys_app_id")
        batch.drop_column("app_id")


def downgrade() -> None:
    with op.batch_alter_table("lc_api_keys") as batch:
        batch.add_column(sa.Column("app_id", sa.String(40), nullable=True))
        batch.create_index("ix_lc_api_keys_app_id", ["app_id"])
    conn = op.get_bind()
    keys = sa.table(
        "lc_api_keys", sa.column("id"), sa.column("app_id"), sa.column("app_ids", sa.JSON)
    )
    for key_id, app_ids in conn.execute(
        sa.select(keys.c.id, keys.c.app_ids).where(keys.c.app_ids.is_not(None))
    ).all():
        first = sorted(app_ids)[0] if app_ids else "app_none"
        conn.execute(sa.update(keys).where(keys.c.id == key_id).values(app_id=first))
    with op.batch_alter_table("lc_api_keys") as batch:
        batch.drop_constraint("uq_lc_api_keys_previous_key_hash", type_="unique")
        for column in (
            "usage_count",
            "last_used_ip",
            "expires_at",
            "app_ids",
            "role",
            "previous_expires_at",
            "previous_key_hash",
            "description",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("lc_apps") as batch:
        batch.drop_column("mode")
