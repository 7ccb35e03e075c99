"""Revocations kept in the store: the table every denylist follows, and its change counter.

Revision ID: 0002
Revises: 0001

``lc_revocations`` holds revoked token ids, license blocks and "issued before" marks
(``store/revocations.py``); ``lc_revocation_counter`` is one row: the change counter that
every process polls and the store's random name in Redis. The row is created here, so a
migrated store is ready for the first revocation.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lc_revocations",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("ident", sa.String(256), primary_key=True),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("until", sa.Double, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_lc_revocations_seq", "lc_revocations", ["seq"])
    op.create_index("ix_lc_revocations_until", "lc_revocations", ["until"])
    counter = op.create_table(
        "lc_revocation_counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("store_id", sa.String(32), nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "value": 0, "store_id": secrets.token_hex(16)}])


def downgrade() -> None:
    op.drop_table("lc_revocation_counter")
    op.drop_index("ix_lc_revocations_until", table_name="lc_revocations")
    op.drop_index("ix_lc_revocations_seq", table_name="lc_revocations")
    op.drop_table("lc_revocations")
