"""The audit log as a hash chain: actor details, app, MAC columns, personal columns, head
and checkpoints.

Revision ID: 0005
Revises: 0003

- ``lc_audit_events``: ``seq`` (the event's place in the chain; NULL for events written
  before this revision, which the chain does not cover), ``actor_kind``, ``actor_name``,
  ``request_id``, ``app_id``, ``key_id``, ``prev_mac``, ``mac``, ``personal_digest``
  (chained), and ``actor_ip``, ``actor_user_agent``, ``personal``, ``personal_salt``
  (personal data, outside the MAC, blanked by an erasure). Indexes for the readers' filters.
- PostgreSQL: the event id sequence moves past the ids in the table.
- ``lc_audit_head``: one row, the chain's last ``seq`` and MAC (seq 0: empty chain).
- ``lc_audit_checkpoints``: what ``audit prune`` leaves so that ``audit verify`` still proves
  the rest of the chain.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_UTC = sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite")
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
GENESIS = "0" * 64


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Audit writes are no longer best effort: an event id its sequence hands out twice
        # (rows copied in with explicit ids) would now fail the change. Move it past them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('lc_audit_events', 'id'), "
            "COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM lc_audit_events"
        )
    with op.batch_alter_table("lc_audit_events") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("actor_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("actor_name", sa.Text, nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("app_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("prev_mac", sa.String(64), nullable=True))
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
        batch.add_column(sa.Column("personal_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("actor_ip", sa.Text, nullable=True))
        batch.add_column(sa.Column("actor_user_agent", sa.Text, nullable=True))
        batch.add_column(sa.Column("personal", sa.JSON, nullable=True))
        batch.add_column(sa.Column("personal_salt", sa.String(32), nullable=True))
        batch.create_index("ux_lc_audit_events_seq", ["seq"], unique=True)
        batch.create_index("ix_lc_audit_events_app_id", ["app_id", "id"])
        batch.create_index("ix_lc_audit_events_target", ["target", "id"])
        batch.create_index("ix_lc_audit_events_created", ["created_at"])
    head = op.create_table(
        "lc_audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("head_mac", sa.String(64), nullable=True),
    )
    assert head is not None
    op.bulk_insert(head, [{"id": 1, "seq": 0, "mac": GENESIS, "key_id": None, "head_mac": None}])
    op.create_table(
        "lc_audit_checkpoints",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
        sa.Column("pruned", sa.BigInteger, nullable=False),
        sa.Column("before", _UTC, nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(64), nullable=False),
    )
    op.create_index("ux_lc_audit_checkpoints_seq", "lc_audit_checkpoints", ["seq"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_lc_audit_checkpoints_seq", "lc_audit_checkpoints")
    op.drop_table("lc_audit_checkpoints")
    op.drop_table("lc_audit_head")
    with op.batch_alter_table("lc_audit_events") as batch:
        batch.drop_index("ix_lc_audit_events_created")
        batch.drop_index("ix_lc_audit_events_target")
        batch.drop_index("ix_lc_audit_events_app_id")
        batch.drop_index("ux_lc_audit_events_seq")
        for column in (
            "personal_salt",
            "personal",
            "actor_user_agent",
            "actor_ip",
            "personal_digest",
            "mac",
            "prev_mac",
            "key_id",
            "app_id",
            "request_id",
            "actor_name",
            "actor_kind",
            "seq",
        ):
            batch.drop_column(column)
