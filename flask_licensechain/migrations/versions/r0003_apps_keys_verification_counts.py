"""App webhook URL and CORS origins, app-limited API keys, verification counts per day.

Revision ID: 0003
Revises: 0002

- ``lc_apps.webhook_url`` (nullable) and ``lc_apps.allowed_origins`` (a JSON list; existing
  apps get ``[]``).
- ``lc_api_keys.app_id`` (nullable, indexed): the one app a key may act on; existing keys stay
  unrestricted.
- ``lc_verification_counts``: verification outcomes counted per UTC day, app and license.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("lc_apps") as batch:
        batch.add_column(sa.Column("webhook_url", sa.Text, nullable=True))
        # The default fills the existing rows; the code always writes the column itself.
        batch.add_column(
            sa.Column("allowed_origins", sa.JSON, nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("lc_apps") as batch:
        batch.alter_column("allowed_origins", existing_type=sa.JSON, server_default=None)
    with op.batch_alter_table("lc_api_keys") as batch:
        batch.add_column(sa.Column("app_id", sa.String(40), nullable=True))
        batch.create_index("ix_lc_api_keys_app_id", ["app_id"])
    op.create_table(
        "lc_verification_counts",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("license_id", sa.String(40), primary_key=True),
        sa.Column("outcome", sa.String(40), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_lc_verification_counts_app_day", "lc_verification_counts", ["app_id", "day"]
    )
    op.create_index(
        "ix_lc_verification_counts_license_day", "lc_verification_counts", ["license_id", "day"]
    )


def downgrade() -> None:
    op.drop_index("ix_lc_verification_counts_license_day", "lc_verification_counts")
    op.drop_index("ix_lc_verification_counts_app_day", "lc_verification_counts")
    op.drop_table("lc_verification_counts")
    with op.batch_alter_table("lc_api_keys") as batch:
        batch.drop_index("ix_lc_api_keys_app_id")
        batch.drop_column("app_id")
    with op.batch_alter_table("lc_apps") as batch:
        batch.drop_column("allowed_origins")
        batch.drop_column("webhook_url")
