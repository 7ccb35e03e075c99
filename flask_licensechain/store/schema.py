"""The tables (SQLAlchemy Core). One ``MetaData``; the same DDL on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from .sealed import register_sealed_column


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends. A naive value given is taken as UTC.

    PostgreSQL keeps ``timestamptz``. SQLite has no date type: the value is kept as fixed-width
    UTC text, ``YYYY-MM-DD HH:MM:SS.ffffff``, so text order is time order and comparisons in
    SQL hold; it is parsed back with ``datetime.fromisoformat`` (C code, several times faster
    than SQLAlchemy's generic SQLite DATETIME parser: the verify hot path reads seven of them).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(26))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


metadata = sa.MetaData()

apps = sa.Table(
    "lc_apps",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("slug", sa.String(80), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("tier", sa.String(20), nullable=False),
    # "live" or "test", set at creation: lc_live_ keys act on live apps, lc_test_ on test ones.
    sa.Column("mode", sa.String(8), nullable=False),
    # Where the app's events go (the webhooks read it); NULL: nowhere.
    sa.Column("webhook_url", sa.Text),
    # Browser origins allowed to call the public endpoints for this app's licenses (CORS).
    sa.Column("allowed_origins", sa.JSON, nullable=False, default=list),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

licenses = sa.Table(
    "lc_licenses",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "app_id", sa.String(40), sa.ForeignKey("lc_apps.id", ondelete="CASCADE"), nullable=False
    ),
    # The verify hot path looks licenses up by key: a unique index.
    sa.Column("key", sa.String(40), nullable=False, unique=True),
    sa.Column("plan", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("issued_to", sa.Text),
    sa.Column("issued_email", sa.Text),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("max_devices", sa.Integer, nullable=False),
    sa.Column("require_hwuid", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_lc_licenses_app_created", "app_id", "created_at"),
    sa.Index("ix_lc_licenses_created", "created_at"),
)

devices = sa.Table(
    "lc_devices",
    metadata,
    sa.Column(
        "license_id",
        sa.String(40),
        sa.ForeignKey("lc_licenses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("hwuid", sa.Text, primary_key=True),
    sa.Column("bound_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
)

api_keys = sa.Table(
    "lc_api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("prefix", sa.String(20), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # SHA-256, hex
    # After a rotation: the previous secret's hash, accepted until previous_expires_at.
    sa.Column("previous_key_hash", sa.String(64)),
    sa.Column("previous_expires_at", UTCDateTime),
    sa.Column("environment", sa.String(8), nullable=False),
    # A role name (roles.py), or NULL for a key made with explicit scopes.
    sa.Column("role", sa.String(20)),
    sa.Column("scopes", sa.JSON, nullable=False),
    # The apps this key may act on (a JSON list of app ids); NULL: every app.
    sa.Column("app_ids", sa.JSON(none_as_null=True)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("last_used_ip", sa.String(64)),
    sa.Column("usage_count", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.UniqueConstraint("previous_key_hash", name="uq_lc_api_keys_previous_key_hash"),
)

signing_keys = sa.Table(
    "lc_signing_keys",
    metadata,
    sa.Column("kid", sa.String(128), primary_key=True),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("sealed_private_key", sa.LargeBinary),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("retired_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime),
    # At most one active key, enforced by the database itself (a partial unique index).
    sa.Index(
        "ux_lc_signing_keys_one_active",
        "state",
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    ),
)

# The audit log: a hash chain (store/audit.py has the design). ``seq`` NULL: an event written
# before the chain existed. The personal columns (actor_ip .. personal_salt) stay outside the
# MAC so that an erasure can blank them.
audit_events = sa.Table(
    "lc_audit_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("actor", sa.Text),  # the actor's id: API key id, OS user, console user id
    sa.Column("target", sa.Text),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("seq", sa.BigInteger),
    sa.Column("actor_kind", sa.String(16)),
    sa.Column("actor_name", sa.Text),
    sa.Column("request_id", sa.String(128)),
    sa.Column("app_id", sa.String(40)),
    sa.Column("key_id", sa.String(32)),
    sa.Column("prev_mac", sa.String(64)),
    sa.Column("mac", sa.String(64)),
    sa.Column("personal_digest", sa.String(64)),
    sa.Column("actor_ip", sa.Text),
    sa.Column("actor_user_agent", sa.Text),
    sa.Column("personal", sa.JSON),
    sa.Column("personal_salt", sa.String(32)),
    sa.Index("ux_lc_audit_events_seq", "seq", unique=True),
    sa.Index("ix_lc_audit_events_app_id", "app_id", "id"),
    sa.Index("ix_lc_audit_events_target", "target", "id"),
    sa.Index("ix_lc_audit_events_created", "created_at"),
)

# One row: the chain's head (last seq and MAC), updated with every append under its row lock.
audit_head = sa.Table(
    "lc_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("head_mac", sa.String(64)),
)

# What ``audit prune`` leaves: the last pruned event's seq and MAC, signed.
audit_checkpoints = sa.Table(
    "lc_audit_checkpoints",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Column("pruned", sa.BigInteger, nullable=False),
    sa.Column("before", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("signature", sa.String(64), nullable=False),
    sa.Index("ux_lc_audit_checkpoints_seq", "seq", unique=True),
)

# Revocations: the source of truth every denylist follows (see store/revocations.py).
revocations = sa.Table(
    "lc_revocations",
    metadata,
    sa.Column("kind", sa.String(8), primary_key=True),  # jti, block, before
    sa.Column("ident", sa.String(256), primary_key=True),  # a jti or a license id
    sa.Column("not_before", sa.BigInteger, nullable=False),  # unix seconds (kind "before")
    sa.Column("until", sa.Double, nullable=False),  # unix seconds; a lifted block: its lift time
    sa.Column("seq", sa.BigInteger, nullable=False),  # the change counter of the last write
    sa.Index("ix_lc_revocations_seq", "seq"),
    sa.Index("ix_lc_revocations_until", "until"),
)

# One row: the change counter that denylists poll, and the store's name in Redis.
revocation_counter = sa.Table(
    "lc_revocation_counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("store_id", sa.String(32), nullable=False),
)

# Verification outcomes counted per UTC day (the analytics endpoints read them). No personal
# data: an unknown key counts under empty app and license ids.
verification_counts = sa.Table(
    "lc_verification_counts",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),  # YYYY-MM-DD (UTC)
    sa.Column("app_id", sa.String(40), primary_key=True),
    sa.Column("license_id", sa.String(40), primary_key=True),
    sa.Column("outcome", sa.String(40), primary_key=True),  # "valid" or the refusal reason
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_lc_verification_counts_app_day", "app_id", "day"),
    sa.Index("ix_lc_verification_counts_license_day", "license_id", "day"),
)

# -- the admin console (flask_licensechain/console): people, their second factors, sessions --

console_users = sa.Table(
    "lc_console_users",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # lower-cased
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    # The apps this user may act on; empty: every app.
    sa.Column("app_ids", sa.JSON, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("password_hash", sa.Text),  # Argon2id (PHC string); NULL until set up
    sa.Column("totp_secret", sa.LargeBinary),  # sealed; NULL: none
    sa.Column("totp_enabled", sa.Boolean, nullable=False),
    sa.Column("totp_last_step", sa.BigInteger),  # the last accepted step: replays refused
    sa.Column("locked_until", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# The TOTP secret, sealed by core/sealing.py (re-sealed by `rotate-encryption-key`).
register_sealed_column(
    console_users,
    "totp_secret",
    context=lambda row: b"lc_console_users.totp_secret:" + row.id.encode(),
)

console_sessions = sa.Table(
    "lc_console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # SHA-256 (hex) of the cookie's id
    sa.Column(
        "user_id",
        sa.String(40),
        sa.ForeignKey("lc_console_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("stage", sa.String(8), nullable=False),  # mfa, enrol, full
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("mfa_at", UTCDateTime),  # the last second-factor check
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.Text),
    sa.Column("revoked_at", UTCDateTime),
)

console_login_failures = sa.Table(
    "lc_console_login_failures",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_lc_console_login_failures_email", "email", "created_at"),
    sa.Index("ix_lc_console_login_failures_ip", "ip", "created_at"),
)

console_setup_tokens = sa.Table(
    "lc_console_setup_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # SHA-256 (hex)
    sa.Column(
        "user_id",
        sa.String(40),
        sa.ForeignKey("lc_console_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
)

console_backup_codes = sa.Table(
    "lc_console_backup_codes",
    metadata,
    sa.Column(
        "user_id",
        sa.String(40),
        sa.ForeignKey("lc_console_users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("code_hash", sa.String(64), primary_key=True),  # HMAC-SHA-256 (hex)
    sa.Column("used_at", UTCDateTime),
)

console_webauthn_credentials = sa.Table(
    "lc_console_webauthn_credentials",
    metadata,
    sa.Column("id", sa.String(1400), primary_key=True),  # credential id, base64url
    sa.Column(
        "user_id",
        sa.String(40),
        sa.ForeignKey("lc_console_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),  # COSE key
    sa.Column("sign_count", sa.BigInteger, nullable=False),
    sa.Column("transports", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
)

# Pending WebAuthn ceremonies (console/passkeys.py): each challenge is used once, by the
# browser it was issued to, before it expires. Rows are deleted when used or swept.
console_webauthn_challenges = sa.Table(
    "lc_console_webauthn_challenges",
    metadata,
    sa.Column("challenge_hash", sa.String(64), primary_key=True),  # SHA-256 (hex)
    sa.Column("purpose", sa.String(16), nullable=False),  # register, mfa, reauth, passwordless
    # The user the ceremony is for; NULL: anyone (a passwordless sign-in).
    sa.Column("user_id", sa.String(40), sa.ForeignKey("lc_console_users.id", ondelete="CASCADE")),
    # SHA-256 (hex) of a random id kept in the browser's session cookie.
    sa.Column("binding_hash", sa.String(64), nullable=False, index=True),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)


# Named secret keys (store/named_keys.py): 32 random bytes each, sealed under the keyring.
named_keys = sa.Table(
    "lc_named_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("sealed_key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
