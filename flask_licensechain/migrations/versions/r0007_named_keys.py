"""Named secret keys sealed under the encryption keyring.

Revision ID: 0007
Revises: 0006

- ``lc_named_keys``: 32-byte keys by name (HMAC keys, pseudonym keys), sealed by
  ``core/sealing.py`` so that they survive a rotation of the encryption keys.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lc_named_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_table("lc_named_keys")
