"""Pending WebAuthn ceremonies of the console, kept on the server and used once.

Revision ID: 0009
Revises: 0008

- ``lc_console_webauthn_challenges``: the SHA-256 of each issued challenge, its purpose
  (``register``, ``mfa``, ``reauth``, ``passwordless``), the user it is for (NULL: anyone),
  the SHA-256 of the random id that binds it to the browser's session, and its expiry. A
  challenge is deleted when it is used, so a captured session cookie and a signed answer
  cannot be sent twice. Nothing to carry over: ceremonies pending in session cookies at the
  upgrade are refused (the user starts again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_TIME = sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lc_console_webauthn_challenges",
        sa.Column("challenge_hash", sa.String(64), primary_key=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column(
            "user_id",
            sa.String(40),
            sa.ForeignKey("lc_console_users.id", ondelete="CASCADE"),
        ),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
    )
    op.create_index(
        "ix_lc_console_webauthn_challenges_binding_hash",
        "lc_console_webauthn_challenges",
        ["binding_hash"],
    )
    op.create_index(
        "ix_lc_console_webauthn_challenges_expires_at",
        "lc_console_webauthn_challenges",
        ["expires_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_lc_console_webauthn_challenges_expires_at", "lc_console_webauthn_challenges")
    op.drop_index(
        "ix_lc_console_webauthn_challenges_binding_hash", "lc_console_webauthn_challenges"
    )
    op.drop_table("lc_console_webauthn_challenges")
