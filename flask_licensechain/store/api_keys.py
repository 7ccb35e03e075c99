"""Admin API keys: ``lc_live_<random>`` / ``lc_test_<random>``, kept only as a SHA-256 hash.

The keys carry 256 random bits, so a fast unsalted hash is the right tool (a slow password
hash protects guessable secrets; nobody can guess these). Lookup is by hash, and the hash is
then compared again with ``hmac.compare_digest`` so the answer never hinges on a timing leak
in an index lookup.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from ..core.errors import InvalidRequest, LicenseChainError, NotFound
from . import validation as check
from .database import Database
from .records import ApiKeyRecord
from .schema import api_keys, apps

log = logging.getLogger(__name__)

#: The scopes an admin API key can hold, one per endpoint family; ``*`` grants all of them.
API_KEY_SCOPES: Final = (
    "apps:read",
    "apps:write",
    "licenses:read",
    "licenses:write",
    "tokens:revoke",
    "keys:rotate",
    "api-keys:write",
    "audit:read",
    "webhooks:write",
    "metrics:read",
    "*",
)
ENVIRONMENTS: Final = ("live", "test")
_RANDOM_BYTES = 32  # token_urlsafe(32) gives 43 characters
_PREFIX_LENGTH = 12  # "lc_live_" plus 4 random characters, enough to tell keys apart
_KEY_PATTERN = re.compile(r"lc_(live|test)_[A-Za-z0-9_-]{32,128}")
#: last_used_at is refreshed at most this often, so authentication is not a write per request
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("ascii")).hexdigest()


def _record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        environment=row.environment,
        app_id=row.app_id,
    )


def _scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    # A string or a mapping is iterable too ("*" as one "*"): only a collection of scopes counts.
    if isinstance(scopes, str | bytes | Mapping) or not isinstance(scopes, Iterable):
        raise InvalidRequest("scopes must be a list of strings.")
    result: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or scope not in API_KEY_SCOPES:
            raise InvalidRequest(
                f"Unknown scope {scope!r}; valid scopes: {', '.join(API_KEY_SCOPES)}."
            )
        if scope not in result:
            result.append(scope)
    if not result:
        raise InvalidRequest("An API key needs at least one scope.")
    return tuple(result)


_BY_HASH = sa.select(api_keys).where(api_keys.c.key_hash == sa.bindparam("key_hash"))


class ApiKeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        environment: str = "live",
        app_id: str | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """A new key and its plaintext, which is never stored and cannot be shown again.

        ``app_id`` limits the key to that one app. ``InvalidRequest`` for a bad name, scope
        or environment.
        """
        record, plaintext = self._new(name, scopes, environment, app_id)
        with self._db.write() as conn:
            self._insert(conn, record, plaintext)
        return record, plaintext

    def replace_app_key(
        self, app_id: str, name: str, scopes: Iterable[str], *, environment: str = "live"
    ) -> tuple[ApiKeyRecord, str, builtins.list[str]]:
        """A new key limited to ``app_id``, and every live key limited to it revoked, in one
        transaction: ``(record, plaintext, revoked key ids)``. ``NotFound`` without the app."""
        record, plaintext = self._new(name, scopes, environment, app_id)
        with self._db.write() as conn:
            # The app row's lock queues concurrent replacements (PostgreSQL; SQLite writers
            # are serialized anyway), so exactly one new key stays live.
            locked = sa.select(apps.c.id).where(apps.c.id == app_id).with_for_update()
            if conn.scalar(locked) is None:
                raise NotFound("App not found.")
            previous = builtins.list(
                conn.scalars(
                    sa.select(api_keys.c.id).where(
                        api_keys.c.app_id == app_id, api_keys.c.revoked_at.is_(None)
                    )
                )
            )
            if previous:
                conn.execute(
                    sa.update(api_keys)
                    .where(api_keys.c.id.in_(previous), api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=record.created_at)
                )
            self._insert(conn, record, plaintext)
        return record, plaintext, previous

    @staticmethod
    def _new(
        name: str, scopes: Iterable[str], environment: str, app_id: str | None
    ) -> tuple[ApiKeyRecord, str]:
        name = check.required_text(name, "name").strip()
        granted = _scopes(scopes)
        if environment not in ENVIRONMENTS:
            raise InvalidRequest("environment must be 'live' or 'test'.")
        if app_id is not None and not check.is_lookup(app_id):
            raise NotFound("App not found.")
        plaintext = f"lc_{environment}_{secrets.token_urlsafe(_RANDOM_BYTES)}"
        record = ApiKeyRecord(
            id=check.new_id("key"),
            name=name,
            prefix=plaintext[:_PREFIX_LENGTH],
            scopes=granted,
            created_at=datetime.now(UTC),
            environment=environment,
            app_id=app_id,
        )
        return record, plaintext

    @staticmethod
    def _insert(conn: sa.Connection, record: ApiKeyRecord, plaintext: str) -> None:
        conn.execute(
            sa.insert(api_keys).values(
                id=record.id,
                name=record.name,
                prefix=record.prefix,
                key_hash=hash_api_key(plaintext),
                environment=record.environment,
                scopes=builtins.list(record.scopes),
                app_id=record.app_id,
                created_at=record.created_at,
            )
        )

    def authenticate(self, plaintext: str) -> ApiKeyRecord | None:
        """The live key for ``plaintext``, or ``None``. Malformed input never raises."""
        if not isinstance(plaintext, str) or not _KEY_PATTERN.fullmatch(plaintext):
            return None
        presented = hash_api_key(plaintext)
        with self._db.single() as conn:
            row = conn.execute(_BY_HASH, {"key_hash": presented}).first()
        if row is None or not hmac.compare_digest(row.key_hash, presented):
            return None
        if row.revoked_at is not None:
            return None
        record = _record(row)
        now = datetime.now(UTC)
        if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION:
            self._touch(record.id, now)
            record = dataclasses.replace(record, last_used_at=now)
        return record

    def _touch(self, key_id: str, now: datetime) -> None:
        # Bookkeeping only: a busy database must not turn a valid key into a failed request.
        try:
            with self._db.write() as conn:
                conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now)
                )
        except LicenseChainError as error:
            log.warning("could not record API key use: %s", error.detail or error)

    def revoke(self, key_id: str) -> bool:
        """``True`` when a live key was revoked now; revoking twice answers ``False``."""
        if not check.is_lookup(key_id):
            return False
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return result.rowcount > 0

    def get(self, key_id: str) -> ApiKeyRecord | None:
        if not check.is_lookup(key_id):
            return None
        with self._db.single() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _record(row)

    def list(self) -> builtins.list[ApiKeyRecord]:
        with self._db.single() as conn:
            rows = conn.execute(
                sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
            ).all()
        return [_record(row) for row in rows]
