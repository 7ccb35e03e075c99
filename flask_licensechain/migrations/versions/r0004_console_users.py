"""The admin console's people: users, sessions, sign-in failures, setup links, second factors.

Revision ID: 0004
Revises: 0003

- ``lc_console_users``: email (unique, lower-cased), display name, role, app restriction,
  disabled flag, Argon2id password hash, sealed TOTP secret and its last accepted step,
  lock time.
- ``lc_console_sessions``: server-side sessions by the SHA-256 of their cookie id.
- ``lc_console_login_failures``: failed sign-ins by email and IP (backoff and lockout).
- ``lc_console_setup_tokens``: one-time setup links (by hash).
- ``lc_console_backup_codes``: single-use backup codes (by keyed hash).
- ``lc_console_webauthn_credentials``: passkeys and security keys.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_TIME = sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite")
_SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _user_fk() -> sa.ForeignKey:
    return sa.ForeignKey("lc_console_users.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "lc_console_users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("app_ids", sa.JSON, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("totp_secret", sa.LargeBinary),
        sa.Column("totp_enabled", sa.Boolean, nullable=False),
        sa.Column("totp_last_step", sa.BigInteger),
        sa.Column("locked_until", _TIME),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "lc_console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(40), _user_fk(), nullable=False),
        sa.Column("stage", sa.String(8), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
        sa.Column("mfa_at", _TIME),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.Text),
        sa.Column("revoked_at", _TIME),
    )
    op.create_index("ix_lc_console_sessions_user_id", "lc_console_sessions", ["user_id"])
    op.create_table(
        "lc_console_login_failures",
        sa.Column("id", _SERIAL, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index(
        "ix_lc_console_login_failures_email", "lc_console_login_failures", ["email", "created_at"]
    )
    op.create_index(
        "ix_lc_console_login_failures_ip", "lc_console_login_failures", ["ip", "created_at"]
    )
    op.create_table(
        "lc_console_setup_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(40), _user_fk(), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("used_at", _TIME),
    )
    op.create_index("ix_lc_console_setup_tokens_user_id", "lc_console_setup_tokens", ["user_id"])
    op.create_table(
        "lc_console_backup_codes",
        sa.Column("user_id", sa.String(40), _user_fk(), primary_key=True),
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("used_at", _TIME),
    )
    op.create_table(
        "lc_console_webauthn_credentials",
        sa.Column("id", sa.String(1400), primary_key=True),
        sa.Column("user_id", sa.String(40), _user_fk(), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("transports", sa.JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("last_used_at", _TIME),
    )
    op.create_index(
        "ix_lc_console_webauthn_credentials_user_id",
        "lc_console_webauthn_credentials",
        ["user_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_lc_console_webauthn_credentials_user_id", "lc_console_webauthn_credentials")
    op.drop_table("lc_console_webauthn_credentials")
    op.drop_table("lc_console_backup_codes")
    op.drop_index("ix_lc_console_setup_tokens_user_id", "lc_console_setup_tokens")
    op.drop_table("lc_console_setup_tokens")
    op.drop_index("ix_lc_console_login_failures_ip", "lc_console_login_failures")
    op.drop_index("ix_lc_console_login_failures_email", "lc_console_login_failures")
    op.drop_table("lc_console_login_failures")
    op.drop_index("ix_lc_console_sessions_user_id", "lc_console_sessions")
    op.drop_table("lc_console_sessions")
    op.drop_table("lc_console_users")
