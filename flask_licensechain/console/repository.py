"""The console's rows in the store: users, sessions, sign-in failures, setup links, backup
codes, WebAuthn credentials and pending WebAuthn challenges (tables ``lc_console_*`` in
``store/schema.py``).

Every method is its own transaction, as in the store's other repositories. Secrets are kept
only as hashes (session ids, setup tokens, backup codes) or sealed (TOTP secrets, by the
caller). Times are aware UTC datetimes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..core.errors import Conflict, NotFound
from ..store.database import Database
from ..store.schema import (
    console_backup_codes,
    console_login_failures,
    console_sessions,
    console_setup_tokens,
    console_users,
    console_webauthn_challenges,
    console_webauthn_credentials,
    to_utc,
)

# Retention and erasure of these tables' IPs, user agents and e-mails: registered in
# store/retention.py, so that every process (the CLI too) reaches them, console on or off.


@dataclass(frozen=True)
class ConsoleUser:
    """A person who signs in to the console. ``app_ids`` empty: every app."""

    id: str
    email: str
    display_name: str
    role: str
    app_ids: tuple[str, ...]
    disabled: bool
    password_hash: str | None = field(repr=False)
    totp_secret: bytes | None = field(repr=False)
    totp_enabled: bool
    totp_last_step: int | None
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConsoleSession:
    """A server-side session. ``stage``: ``mfa`` (password checked, second factor pending),
    ``enrol`` (must enrol a second factor first) or ``full``."""

    id_hash: str = field(repr=False)
    user_id: str
    stage: str
    created_at: datetime
    last_seen_at: datetime
    mfa_at: datetime | None
    ip: str | None
    user_agent: str | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class WebAuthnCredential:
    """A registered passkey or security key. ``id`` is the credential id, base64url."""

    id: str
    user_id: str
    name: str
    public_key: bytes = field(repr=False)
    sign_count: int
    transports: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class PendingChallenge:
    """A WebAuthn challenge taken for use: its ``purpose`` and the user it was issued for
    (None: anyone, a passwordless sign-in)."""

    purpose: str
    user_id: str | None


def new_user_id() -> str:
    return "usr_" + secrets.token_hex(12)


def _user(row: Any) -> ConsoleUser:
    secret = row.totp_secret
    return ConsoleUser(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        role=row.role,
        app_ids=tuple(row.app_ids or ()),
        disabled=bool(row.disabled),
        password_hash=row.password_hash,
        totp_secret=None if secret is None else bytes(secret),
        totp_enabled=bool(row.totp_enabled),
        totp_last_step=row.totp_last_step,
        locked_until=row.locked_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _session(row: Any) -> ConsoleSession:
    return ConsoleSession(
        id_hash=row.id_hash,
        user_id=row.user_id,
        stage=row.stage,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        mfa_at=row.mfa_at,
        ip=row.ip,
        user_agent=row.user_agent,
        revoked_at=row.revoked_at,
    )


def _credential(row: Any) -> WebAuthnCredential:
    return WebAuthnCredential(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        public_key=bytes(row.public_key),
        sign_count=int(row.sign_count),
        transports=tuple(row.transports or ()),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


class ConsoleRepository:
    """The console's tables over the store's ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- users -------------------------------------------------------------------------

    def create_user(
        self,
        *,
        email: str,
        display_name: str,
        role: str,
        app_ids: Iterable[str] = (),
        now: datetime,
    ) -> ConsoleUser:
        """Insert a user (no password, no second factor yet). ``Conflict`` when the email
        is taken."""
        values = {
            "id": new_user_id(),
            "email": email,
            "display_name": display_name,
            "role": role,
            "app_ids": list(app_ids),
            "disabled": False,
            "password_hash": None,
            "totp_secret": None,
            "totp_enabled": False,
            "totp_last_step": None,
            "locked_until": None,
            "created_at": to_utc(now),
            "updated_at": to_utc(now),
        }
        with self._db.write() as conn:
            taken = conn.execute(
                sa.select(console_users.c.id).where(console_users.c.email == email)
            ).first()
            if taken is not None:
                raise Conflict(f"A console user with the email {email} exists.")
            conn.execute(sa.insert(console_users).values(**values))
            row = conn.execute(
                sa.select(console_users).where(console_users.c.id == values["id"])
            ).one()
        return _user(row)

    def get_user(self, user_id: str) -> ConsoleUser | None:
        with self._db.single() as conn:
            row = conn.execute(
                sa.select(console_users).where(console_users.c.id == user_id)
            ).first()
        return None if row is None else _user(row)

    def find_user_by_email(self, email: str) -> ConsoleUser | None:
        with self._db.single() as conn:
            row = conn.execute(
                sa.select(console_users).where(console_users.c.email == email)
            ).first()
        return None if row is None else _user(row)

    def list_users(self) -> list[ConsoleUser]:
        with self._db.single() as conn:
            rows = conn.execute(sa.select(console_users).order_by(console_users.c.email)).all()
        return [_user(row) for row in rows]

    def count_users(self) -> int:
        with self._db.single() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(console_users)).scalar_one()
            )

    def update_user(self, user_id: str, *, now: datetime, **values: Any) -> ConsoleUser:
        """Set columns of a user (``role``, ``display_name``, ``disabled``, ``password_hash``,
        ``totp_secret``, ``totp_enabled``, ``totp_last_step``, ``locked_until``, ``app_ids``).
        ``NotFound`` when there is no such user."""
        allowed = {
            "role",
            "display_name",
            "disabled",
            "password_hash",
            "totp_secret",
            "totp_enabled",
            "totp_last_step",
            "locked_until",
            "app_ids",
        }
        unknown = set(values) - allowed
        if unknown:
            raise TypeError(f"not a console user column: {sorted(unknown)}")
        if "app_ids" in values:
            values["app_ids"] = list(values["app_ids"])
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(console_users)
                .where(console_users.c.id == user_id)
                .values(**values, updated_at=to_utc(now))
            )
            if result.rowcount == 0:
                raise NotFound("Console user not found.")
            row = conn.execute(sa.select(console_users).where(console_users.c.id == user_id)).one()
        return _user(row)

    def accept_totp_step(self, user_id: str, step: int, *, now: datetime) -> bool:
        """Record ``step`` as the user's last accepted TOTP step, only if it is newer than
        the one recorded: False means the code (or an older one) was already used."""
        last = console_users.c.totp_last_step
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(console_users)
                .where(console_users.c.id == user_id, sa.or_(last.is_(None), last < step))
                .values(totp_last_step=step, updated_at=to_utc(now))
            )
        return result.rowcount == 1

    # -- sessions ----------------------------------------------------------------------

    def create_session(
        self,
        id_hash: str,
        *,
        user_id: str,
        stage: str,
        now: datetime,
        mfa_at: datetime | None,
        ip: str | None,
        user_agent: str | None,
        created_at: datetime | None = None,
    ) -> None:
        with self._db.write() as conn:
            conn.execute(
                sa.insert(console_sessions).values(
                    id_hash=id_hash,
                    user_id=user_id,
                    stage=stage,
                    created_at=to_utc(created_at or now),
                    last_seen_at=to_utc(now),
                    mfa_at=None if mfa_at is None else to_utc(mfa_at),
                    ip=ip,
                    user_agent=user_agent,
                    revoked_at=None,
                )
            )

    def get_session(self, id_hash: str) -> ConsoleSession | None:
        with self._db.single() as conn:
            row = conn.execute(
                sa.select(console_sessions).where(console_sessions.c.id_hash == id_hash)
            ).first()
        return None if row is None else _session(row)

    def touch_session(self, id_hash: str, now: datetime) -> None:
        with self._db.write() as conn:
            conn.execute(
                sa.update(console_sessions)
                .where(console_sessions.c.id_hash == id_hash)
                .values(last_seen_at=to_utc(now))
            )

    def list_sessions(self, user_id: str) -> list[ConsoleSession]:
        """The user's sessions that are not revoked, most recently seen first."""
        with self._db.single() as conn:
            rows = conn.execute(
                sa.select(console_sessions)
                .where(
                    console_sessions.c.user_id == user_id, console_sessions.c.revoked_at.is_(None)
                )
                .order_by(console_sessions.c.last_seen_at.desc())
            ).all()
        return [_session(row) for row in rows]

    def revoke_session(self, id_hash: str, now: datetime, *, user_id: str | None = None) -> bool:
        """Revoke one session (only the user's own when ``user_id`` is given). True when a
        live session was revoked."""
        conditions = [
            console_sessions.c.id_hash == id_hash,
            console_sessions.c.revoked_at.is_(None),
        ]
        if user_id is not None:
            conditions.append(console_sessions.c.user_id == user_id)
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(console_sessions).where(*conditions).values(revoked_at=to_utc(now))
            )
        return result.rowcount == 1

    def revoke_user_sessions(self, user_id: str, now: datetime, *, keep: str | None = None) -> int:
        """Revoke every live session of a user except ``keep`` (an id hash). The count."""
        conditions = [
            console_sessions.c.user_id == user_id,
            console_sessions.c.revoked_at.is_(None),
        ]
        if keep is not None:
            conditions.append(console_sessions.c.id_hash != keep)
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(console_sessions).where(*conditions).values(revoked_at=to_utc(now))
            )
        return int(result.rowcount)

    def delete_sessions_before(self, cutoff: datetime) -> int:
        """Drop sessions created before ``cutoff`` (past any absolute timeout)."""
        with self._db.write() as conn:
            result = conn.execute(
                sa.delete(console_sessions).where(console_sessions.c.created_at < to_utc(cutoff))
            )
        return int(result.rowcount)

    # -- sign-in failures --------------------------------------------------------------

    def record_failure(self, email: str, ip: str, now: datetime) -> int:
        """Insert a failure row (or an attempt's reservation); its id (ids grow with time)."""
        with self._db.write() as conn:
            result = conn.execute(
                sa.insert(console_login_failures).values(email=email, ip=ip, created_at=to_utc(now))
            )
            key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def delete_failure(self, failure_id: int) -> None:
        with self._db.write() as conn:
            conn.execute(
                sa.delete(console_login_failures).where(console_login_failures.c.id == failure_id)
            )

    def failures_since(
        self,
        since: datetime,
        *,
        email: str | None = None,
        ip: str | None = None,
        before_id: int | None = None,
    ) -> tuple[int, datetime | None]:
        """How many failures since ``since`` for ``email`` or ``ip`` (only rows older than
        ``before_id`` when given), and the latest one."""
        table = console_login_failures
        conditions = [table.c.created_at >= to_utc(since)]
        if before_id is not None:
            conditions.append(table.c.id < before_id)
        if email is not None:
            conditions.append(table.c.email == email)
        if ip is not None:
            conditions.append(table.c.ip == ip)
        with self._db.single() as conn:
            count, latest = conn.execute(
                sa.select(sa.func.count(), sa.func.max(table.c.created_at)).where(*conditions)
            ).one()
        if isinstance(latest, str):  # SQLite's max() skips the column type
            latest = to_utc(datetime.fromisoformat(latest))
        return int(count), latest

    def clear_failures(self, email: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                sa.delete(console_login_failures).where(console_login_failures.c.email == email)
            )

    def delete_failures_before(self, cutoff: datetime) -> None:
        with self._db.write() as conn:
            conn.execute(
                sa.delete(console_login_failures).where(
                    console_login_failures.c.created_at < to_utc(cutoff)
                )
            )

    # -- setup links -------------------------------------------------------------------

    def add_setup_token(self, token_hash: str, user_id: str, expires_at: datetime) -> None:
        with self._db.write() as conn:
            conn.execute(
                sa.insert(console_setup_tokens).values(
                    token_hash=token_hash, user_id=user_id, expires_at=to_utc(expires_at)
                )
            )

    def setup_token_user(self, token_hash: str, now: datetime) -> str | None:
        """The user id of an unused, unexpired setup token; else None."""
        table = console_setup_tokens
        with self._db.single() as conn:
            row = conn.execute(
                sa.select(table.c.user_id).where(
                    table.c.token_hash == token_hash,
                    table.c.used_at.is_(None),
                    table.c.expires_at > to_utc(now),
                )
            ).first()
        return None if row is None else str(row.user_id)

    def use_setup_token(self, token_hash: str, now: datetime) -> str | None:
        """Mark a setup token used, once: its user id, or None when it was not usable."""
        table = console_setup_tokens
        with self._db.write() as conn:
            row = conn.execute(
                sa.select(table.c.user_id).where(
                    table.c.token_hash == token_hash,
                    table.c.used_at.is_(None),
                    table.c.expires_at > to_utc(now),
                )
            ).first()
            if row is None:
                return None
            conn.execute(
                sa.update(table)
                .where(table.c.user_id == row.user_id, table.c.used_at.is_(None))
                .values(used_at=to_utc(now))
            )
        return str(row.user_id)

    # -- backup codes ------------------------------------------------------------------

    def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None:
        table = console_backup_codes
        with self._db.write() as conn:
            conn.execute(sa.delete(table).where(table.c.user_id == user_id))
            conn.execute(
                sa.insert(table),
                [{"user_id": user_id, "code_hash": h, "used_at": None} for h in code_hashes],
            )

    def use_backup_code(self, user_id: str, code_hash: str, now: datetime) -> bool:
        """Spend an unused backup code: True once, False ever after."""
        table = console_backup_codes
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(table)
                .where(
                    table.c.user_id == user_id,
                    table.c.code_hash == code_hash,
                    table.c.used_at.is_(None),
                )
                .values(used_at=to_utc(now))
            )
        return result.rowcount == 1

    def unused_backup_codes(self, user_id: str) -> int:
        table = console_backup_codes
        with self._db.single() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        table.c.user_id == user_id, table.c.used_at.is_(None)
                    )
                ).scalar_one()
            )

    # -- WebAuthn credentials ----------------------------------------------------------

    def add_credential(self, credential: WebAuthnCredential) -> None:
        with self._db.write() as conn:
            conn.execute(
                sa.insert(console_webauthn_credentials).values(
                    id=credential.id,
                    user_id=credential.user_id,
                    name=credential.name,
                    public_key=credential.public_key,
                    sign_count=credential.sign_count,
                    transports=list(credential.transports),
                    created_at=to_utc(credential.created_at),
                    last_used_at=None,
                )
            )

    def credentials(self, user_id: str) -> list[WebAuthnCredential]:
        table = console_webauthn_credentials
        with self._db.single() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.user_id == user_id).order_by(table.c.created_at)
            ).all()
        return [_credential(row) for row in rows]

    def get_credential(self, credential_id: str) -> WebAuthnCredential | None:
        table = console_webauthn_credentials
        with self._db.single() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == credential_id)).first()
        return None if row is None else _credential(row)

    def use_credential(self, credential_id: str, sign_count: int, now: datetime) -> None:
        table = console_webauthn_credentials
        with self._db.write() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.id == credential_id)
                .values(sign_count=sign_count, last_used_at=to_utc(now))
            )

    def rename_credential(self, user_id: str, credential_id: str, name: str) -> bool:
        table = console_webauthn_credentials
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(table)
                .where(table.c.id == credential_id, table.c.user_id == user_id)
                .values(name=name)
            )
        return result.rowcount == 1

    def remove_credential(self, user_id: str, credential_id: str) -> bool:
        table = console_webauthn_credentials
        with self._db.write() as conn:
            result = conn.execute(
                sa.delete(table).where(table.c.id == credential_id, table.c.user_id == user_id)
            )
        return result.rowcount == 1

    # -- pending WebAuthn challenges ---------------------------------------------------

    def add_challenge(
        self,
        challenge_hash: str,
        *,
        purpose: str,
        user_id: str | None,
        binding_hash: str,
        expires_at: datetime,
        now: datetime,
    ) -> None:
        """Keep an issued challenge (by its SHA-256, hex) until ``expires_at``. It replaces
        the browser's (``binding_hash``) pending challenge of the same ``purpose``: one
        ceremony of a kind per browser, as before. Expired challenges of every browser are
        swept in the same transaction, so the table holds at most what was issued in the
        last ``CHALLENGE_TTL``."""
        table = console_webauthn_challenges
        with self._db.write() as conn:
            conn.execute(sa.delete(table).where(table.c.expires_at <= to_utc(now)))
            conn.execute(
                sa.delete(table).where(
                    table.c.binding_hash == binding_hash, table.c.purpose == purpose
                )
            )
            conn.execute(
                sa.insert(table).values(
                    challenge_hash=challenge_hash,
                    purpose=purpose,
                    user_id=user_id,
                    binding_hash=binding_hash,
                    expires_at=to_utc(expires_at),
                )
            )

    def take_challenge(
        self, challenge_hash: str, *, binding_hash: str, now: datetime
    ) -> PendingChallenge | None:
        """Delete and return the unexpired challenge ``challenge_hash`` issued to the
        browser ``binding_hash``; None when there is none (never issued, issued to another
        browser, expired, or used already). One ``DELETE ... RETURNING``: of two concurrent
        takes, one gets the row and the other None."""
        table = console_webauthn_challenges
        with self._db.write() as conn:
            row = conn.execute(
                sa.delete(table)
                .where(
                    table.c.challenge_hash == challenge_hash,
                    table.c.binding_hash == binding_hash,
                    table.c.expires_at > to_utc(now),
                )
                .returning(table.c.purpose, table.c.user_id)
            ).first()
        return None if row is None else PendingChallenge(str(row.purpose), row.user_id)
