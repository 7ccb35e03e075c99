"""Admin API keys: ``lc_live_<random>`` / ``lc_test_<random>``, kept only as a SHA-256 hash.

The keys carry 256 random bits, so a fast unsalted hash is the right tool (a slow password
hash protects guessable secrets; nobody can guess these). Lookup is by hash, and the hash is
then compared again with ``hmac.compare_digest`` so the answer never hinges on a timing leak
in an index lookup.

A key has a name, an optional description, a role (``roles.py``) or explicit scopes, an
environment (``live``/``test``, its prefix), an optional set of apps it is limited to, an
optional expiry, and its usage (``last_used_at``, ``last_used_ip``, ``usage_count``).

Checking a key is one indexed ``SELECT`` per request (a second one, on the previous hash,
only when the first finds nothing), nothing cached: a revocation or a rotation committed by
any process is seen by the next request of every process. The lookup runs on the verify
path's ``FastQuery`` (``store/fastpath.py``; ``benchmarks/api_key_check`` has the figures
that justify it). Usage is counted in memory (``ApiKeyUsage``) and written in batches, at
most every second, so that a request never waits for a write.

Rotation keeps the previous secret's hash with the end of its grace period (Stripe's "roll
key" with an expiry for the old one): both secrets authenticate until then. Rotating again
ends the older secret at once.
"""

from __future__ import annotations

import atexit
import builtins
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from .. import field_limits as limits
from ..core.errors import Conflict, InvalidRequest, NotFound
from ..roles import ENVIRONMENTS, ROLES, SCOPES, check_scopes, role_scopes
from . import validation as check
from .database import Database
from .fastpath import FastQuery
from .records import ApiKeyRecord
from .retention import register_retention
from .schema import UTCDateTime, api_keys, apps

log = logging.getLogger(__name__)

# The client IP of a key's last request is reduced past LICENSECHAIN_RETENTION_DAYS_IP
# (store/retention.py), dated by that request.
register_retention(api_keys, timestamp="last_used_at", ips=("last_used_ip",))

#: The scopes an admin API key can hold (``roles.SCOPES``, the one list); ``*`` is all.
API_KEY_SCOPES: Final = SCOPES
_RANDOM_BYTES = 32  # token_urlsafe(32) gives 43 characters
_PREFIX_LENGTH = 12  # "lc_live_" plus 4 random characters, enough to tell keys apart
_KEY_PATTERN = re.compile(r"lc_(live|test)_[A-Za-z0-9_-]{32,128}")
#: the longest grace period a rotation may give the previous secret
MAX_ROTATION_GRACE: Final = timedelta(days=30)
DEFAULT_ROTATION_GRACE: Final = timedelta(hours=24)
#: usage is written at most this often per process
USAGE_FLUSH_SECONDS: Final = 1.0
_MAX_PENDING_USAGE: Final = 100_000

#: why a presented key does not authenticate
REFUSED_UNKNOWN: Final = "invalid"
REFUSED_REVOKED: Final = "revoked"
REFUSED_EXPIRED: Final = "expired"
REFUSED_ROTATED: Final = "rotated"


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("ascii")).hexdigest()


def _app_ids(value: Any) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


def _record(row: Any) -> ApiKeyRecord:
    return _record_of(row._mapping)


def _record_of(row: Mapping[str, Any]) -> ApiKeyRecord:
    role = row["role"] if row["role"] in ROLES else None
    return ApiKeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=ROLES[role] if role is not None else tuple(row["scopes"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        environment=row["environment"],
        app_ids=_app_ids(row["app_ids"]),
        description=row["description"],
        role=role,
        expires_at=row["expires_at"],
        last_used_ip=row["last_used_ip"],
        usage_count=int(row["usage_count"] or 0),
        previous_expires_at=row["previous_expires_at"],
    )


def _check_app_ids(app_ids: Iterable[str] | None) -> frozenset[str] | None:
    if app_ids is None:
        return None
    if isinstance(app_ids, str | bytes) or not isinstance(app_ids, Iterable):
        raise InvalidRequest("appIds must be a list of app ids.")
    found = frozenset(app_ids)
    if not found:
        raise InvalidRequest("appIds must name at least one app (omit it for every app).")
    if len(found) > limits.API_KEY_APPS:
        raise InvalidRequest(f"appIds may name at most {limits.API_KEY_APPS} apps.")
    for app_id in found:
        if not check.is_lookup(app_id):
            raise NotFound("App not found.")
    return found


# Each on a unique index; the previous hash is read only when the current one misses.
_BY_HASH = sa.select(api_keys).where(api_keys.c.key_hash == sa.bindparam("key_hash"))
_BY_PREVIOUS_HASH = sa.select(api_keys).where(
    api_keys.c.previous_key_hash == sa.bindparam("key_hash")
)


class _HashReader:
    """One of the two lookups, on the verify path's ``FastQuery`` (``store/fastpath.py``):
    ``benchmarks/api_key_check`` measures it against the Core path (``bypass_core``)."""

    def __init__(self, statement: sa.Select[Any], db: Database, bypass: bool) -> None:
        self.query = FastQuery(statement, db, bypass=bypass)
        self.decode = self.query.decoder(str(c.key) for c in statement.selected_columns)

    def first(self, key_hash: str) -> Mapping[str, Any] | None:
        rows = self.query.rows({"key_hash": key_hash})
        if not rows:
            return None
        row = rows[0]
        return dict(row._mapping) if isinstance(row, sa.Row) else self.decode(row)


class ApiKeyRepository:
    #: run the key check straight on the driver (``store/fastpath.py``); False: through
    #: SQLAlchemy's ``Connection`` (``benchmarks/api_key_check`` compares both)
    bypass_core = True

    def __init__(self, db: Database) -> None:
        self._db = db
        #: this process's pending usage counts
        self.usage = ApiKeyUsage(db)
        self._readers: tuple[_HashReader, _HashReader] | None = None

    def _hash_readers(self) -> tuple[_HashReader, _HashReader]:
        # Compiled on first use, once the dialect has met the server.
        if self._readers is None:
            self._readers = (
                _HashReader(_BY_HASH, self._db, self.bypass_core),
                _HashReader(_BY_PREVIOUS_HASH, self._db, self.bypass_core),
            )
        return self._readers

    def create(
        self,
        name: str,
        scopes: Iterable[str] | None = None,
        *,
        role: str | None = None,
        description: str | None = None,
        environment: str = "live",
        app_id: str | None = None,
        app_ids: Iterable[str] | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """A new key and its plaintext, which is never stored and cannot be shown again.

        Give ``scopes`` or ``role``. ``app_ids`` (or one ``app_id``) limits the key to those
        apps, which must exist and be in ``environment``'s mode (``NotFound`` otherwise).
        ``InvalidRequest`` for a bad name, scope, role, environment or expiry.
        """
        if app_id is not None:
            app_ids = [app_id] if app_ids is None else [*app_ids, app_id]
        record, plaintext = self._new(
            name,
            scopes,
            role=role,
            description=description,
            environment=environment,
            app_ids=app_ids,
            expires_at=expires_at,
        )
        with self._db.write() as conn:
            self._check_apps(conn, record)
            self._insert(conn, record, plaintext)
        return record, plaintext

    def replace_app_key(
        self,
        app_id: str,
        name: str,
        scopes: Iterable[str],
        *,
        environment: str = "live",
        may_revoke: Callable[[ApiKeyRecord], bool] | None = None,
    ) -> tuple[ApiKeyRecord, str, builtins.list[str]]:
        """A new key limited to ``app_id``, and every live key limited to exactly that app
        (that ``may_revoke`` allows) revoked, in one transaction: ``(record, plaintext,
        revoked key ids)``. ``NotFound`` without the app."""
        record, plaintext = self._new(
            name, scopes, environment=environment, app_ids=[app_id], description=None
        )
        with self._db.write() as conn:
            # The app row's lock queues concurrent replacements (PostgreSQL; SQLite writers
            # are serialized anyway), so exactly one new key stays live.
            locked = sa.select(apps.c.mode).where(apps.c.id == app_id).with_for_update()
            mode = conn.scalar(locked)
            if mode is None:
                raise NotFound("App not found.")
            if mode != environment:
                raise NotFound("App not found.")
            rows = conn.execute(
                sa.select(api_keys).where(
                    api_keys.c.revoked_at.is_(None), api_keys.c.app_ids.is_not(None)
                )
            ).all()
            previous = [
                key.id
                for key in map(_record, rows)
                if key.app_ids == frozenset({app_id}) and (may_revoke is None or may_revoke(key))
            ]
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
        name: str,
        scopes: Iterable[str] | None,
        *,
        role: str | None = None,
        description: str | None,
        environment: str,
        app_ids: Iterable[str] | None,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        name = check.required_text(name, "name").strip()
        description = check.optional_text(description, "description", max_length=limits.DESCRIPTION)
        if role is not None:
            if scopes is not None:
                raise InvalidRequest("Give a role or scopes, not both.")
            granted = role_scopes(role)
        else:
            if scopes is None:
                raise InvalidRequest("An API key needs a role or at least one scope.")
            granted = check_scopes(scopes)
        if environment not in ENVIRONMENTS:
            raise InvalidRequest("environment must be 'live' or 'test'.")
        now = datetime.now(UTC)
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("expiresAt must be in the future.")
        plaintext = f"lc_{environment}_{secrets.token_urlsafe(_RANDOM_BYTES)}"
        record = ApiKeyRecord(
            id=check.new_id("key"),
            name=name,
            description=description,
            prefix=plaintext[:_PREFIX_LENGTH],
            scopes=granted,
            role=role,
            created_at=now,
            environment=environment,
            app_ids=_check_app_ids(app_ids),
            expires_at=expires_at,
        )
        return record, plaintext

    @staticmethod
    def _check_apps(conn: sa.Connection, record: ApiKeyRecord) -> None:
        """``NotFound`` unless every app of the key exists in the key's environment."""
        if record.app_ids is None:
            return
        found = conn.execute(
            sa.select(apps.c.id, apps.c.mode).where(apps.c.id.in_(sorted(record.app_ids)))
        ).all()
        modes = {row.id: row.mode for row in found}
        for app_id in sorted(record.app_ids):
            if modes.get(app_id) != record.environment:
                raise NotFound(f"App {app_id} not found among the {record.environment} apps.")

    @staticmethod
    def _insert(conn: sa.Connection, record: ApiKeyRecord, plaintext: str) -> None:
        conn.execute(
            sa.insert(api_keys).values(
                id=record.id,
                name=record.name,
                description=record.description,
                prefix=record.prefix,
                key_hash=hash_api_key(plaintext),
                environment=record.environment,
                role=record.role,
                scopes=builtins.list(record.scopes),
                app_ids=None if record.app_ids is None else sorted(record.app_ids),
                created_at=record.created_at,
                expires_at=record.expires_at,
                usage_count=0,
            )
        )

    # -- authentication -----------------------------------------------------------------

    def check(self, plaintext: str, now: datetime) -> tuple[ApiKeyRecord | None, str]:
        """``(key, "")`` for a key that authenticates at ``now``, else ``(None, reason)``:
        ``invalid`` (malformed or unknown), ``revoked``, ``expired``, or ``rotated`` (a
        previous secret after its grace period). Malformed input never raises."""
        if not isinstance(plaintext, str) or not _KEY_PATTERN.fullmatch(plaintext):
            return None, REFUSED_UNKNOWN
        presented = hash_api_key(plaintext)
        by_current, by_previous = self._hash_readers()
        current = True
        row = by_current.first(presented)
        if row is None:
            current = False
            row = by_previous.first(presented)
        if row is None:
            return None, REFUSED_UNKNOWN
        stored = row["key_hash"] if current else row["previous_key_hash"]
        if stored is None or not hmac.compare_digest(stored, presented):
            return None, REFUSED_UNKNOWN
        if row["revoked_at"] is not None:
            return None, REFUSED_REVOKED
        expires_at = row["expires_at"]
        if expires_at is not None and expires_at <= now:
            return None, REFUSED_EXPIRED
        if not current:
            grace_end = row["previous_expires_at"]
            if grace_end is None or grace_end <= now:
                return None, REFUSED_ROTATED
        return _record_of(row), ""

    def authenticate(self, plaintext: str) -> ApiKeyRecord | None:
        """The key for ``plaintext`` when it authenticates now, else ``None``; its use is
        counted (``usage``)."""
        now = datetime.now(UTC)
        key, _ = self.check(plaintext, now)
        if key is not None:
            self.usage.record(key.id, now, None)
        return key

    # -- lifecycle ----------------------------------------------------------------------

    def revoke(self, key_id: str) -> bool:
        """``True`` when a live key was revoked now (its previous secret with it);
        revoking twice answers ``False``."""
        if not check.is_lookup(key_id):
            return False
        with self._db.write() as conn:
            result = conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return result.rowcount > 0

    def rotate(
        self, key_id: str, *, grace: timedelta = DEFAULT_ROTATION_GRACE
    ) -> tuple[ApiKeyRecord, str]:
        """A new secret for the key (same id, name, rights and usage), shown once; the
        current secret keeps working for ``grace`` (0: it stops now), an older previous
        secret stops at once. ``NotFound``, ``Conflict`` for a revoked key,
        ``InvalidRequest`` for a negative grace or one over 30 days."""
        if grace < timedelta(0) or grace > MAX_ROTATION_GRACE:
            raise InvalidRequest("The grace period must be between 0 and 30 days.")
        if not check.is_lookup(key_id):
            raise NotFound("API key not found.")
        now = datetime.now(UTC)
        with self._db.write() as conn:
            row = conn.execute(
                sa.select(api_keys).where(api_keys.c.id == key_id).with_for_update()
            ).first()
            if row is None:
                raise NotFound("API key not found.")
            if row.revoked_at is not None:
                raise Conflict("A revoked API key cannot be rotated.")
            plaintext = f"lc_{row.environment}_{secrets.token_urlsafe(_RANDOM_BYTES)}"
            values: dict[str, Any] = {
                "key_hash": hash_api_key(plaintext),
                "prefix": plaintext[:_PREFIX_LENGTH],
                "previous_key_hash": row.key_hash if grace else None,
                "previous_expires_at": now + grace if grace else None,
            }
            conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(**values))
            updated = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one()
        return _record(updated), plaintext

    def update(self, key_id: str, **changes: Any) -> ApiKeyRecord | None:
        """Change ``name``, ``description`` or ``expires_at``; ``None`` without such a key.
        ``InvalidRequest`` for another field or a bad value."""
        unknown = sorted(set(changes) - {"name", "description", "expires_at"})
        if unknown:
            raise InvalidRequest(f"Unknown API key field(s): {', '.join(unknown)}.")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = check.required_text(changes["name"], "name").strip()
        if "description" in changes:
            values["description"] = check.optional_text(
                changes["description"], "description", max_length=limits.DESCRIPTION
            )
        if "expires_at" in changes:
            values["expires_at"] = changes["expires_at"]
        if not check.is_lookup(key_id):
            return None
        with self._db.write() as conn:
            if values:
                result = conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key_id).values(**values)
                )
                if result.rowcount == 0:
                    return None
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _record(row)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        if not check.is_lookup(key_id):
            return None
        with self._db.single() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _record(row)

    def list(self, *, include_revoked: bool = True) -> builtins.list[ApiKeyRecord]:
        """Every key, oldest first (a deployment has tens of keys, not millions)."""
        statement = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            statement = statement.where(api_keys.c.revoked_at.is_(None))
        with self._db.single() as conn:
            rows = conn.execute(statement).all()
        return [_record(row) for row in rows]


def detach_app(conn: sa.Connection, app_id: str, now: datetime) -> builtins.list[str]:
    """In the caller's transaction (an app being deleted): keys limited to ``app_id``
    alone are revoked, and ``app_id`` leaves the other keys' sets. The revoked ids."""
    rows = conn.execute(
        sa.select(api_keys.c.id, api_keys.c.app_ids, api_keys.c.revoked_at).where(
            api_keys.c.app_ids.is_not(None)
        )
    ).all()
    revoked: builtins.list[str] = []
    for row in rows:
        held = _app_ids(row.app_ids)
        if held is None or app_id not in held:
            continue
        rest = sorted(held - {app_id})
        if rest:
            conn.execute(sa.update(api_keys).where(api_keys.c.id == row.id).values(app_ids=rest))
        elif row.revoked_at is None:
            # Never an empty set: that would read as "every app".
            conn.execute(sa.update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=now))
            revoked.append(row.id)
    return revoked


# -- usage --------------------------------------------------------------------------------

_USAGE_UPDATE = (
    sa.update(api_keys)
    .where(api_keys.c.id == sa.bindparam("key_id"))
    .values(
        usage_count=api_keys.c.usage_count + sa.bindparam("uses", type_=sa.BigInteger),
        last_used_ip=sa.case(
            (
                sa.or_(
                    api_keys.c.last_used_at.is_(None),
                    api_keys.c.last_used_at <= sa.bindparam("at", type_=UTCDateTime),
                ),
                sa.bindparam("ip", type_=sa.String),
            ),
            else_=api_keys.c.last_used_ip,
        ),
        last_used_at=sa.case(
            (
                sa.or_(
                    api_keys.c.last_used_at.is_(None),
                    api_keys.c.last_used_at <= sa.bindparam("at", type_=UTCDateTime),
                ),
                sa.bindparam("at", type_=UTCDateTime),
            ),
            else_=api_keys.c.last_used_at,
        ),
    )
)


class ApiKeyUsage:
    """Per-process usage counts (uses, last time, last client IP) written in batches.

    ``record`` is a dict update under a lock (no I/O on the request path); a daemon timer
    writes the batch ``USAGE_FLUSH_SECONDS`` after the first pending use, so ``show`` lags
    by about a second. A failed write keeps the counts for the next try. After a fork the
    child starts empty. Thread-safe.
    """

    def __init__(self, db: Database, *, flush_seconds: float = USAGE_FLUSH_SECONDS) -> None:
        self._db = db
        self._flush_seconds = flush_seconds
        self._closed = False
        self._reset()
        atexit.register(_flush_usage_at_exit, weakref.ref(self))

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: key id -> [uses, last time, last ip]
        self._pending: dict[str, list[Any]] = {}
        self._timer: threading.Timer | None = None

    def record(self, key_id: str, now: datetime, ip: str | None) -> None:
        """Count one use of ``key_id`` at ``now`` from ``ip``."""
        if os.getpid() != self._pid:
            self._reset()
        with self._lock:
            entry = self._pending.get(key_id)
            if entry is not None:
                entry[0] += 1
                if now >= entry[1]:
                    entry[1], entry[2] = now, ip
            elif len(self._pending) < _MAX_PENDING_USAGE:
                self._pending[key_id] = [1, now, ip]
            if self._timer is None and not self._closed:
                timer = threading.Timer(self._flush_seconds, self._on_timer)
                timer.daemon = True
                self._timer = timer
                timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush(quiet=True)

    def flush(self, *, quiet: bool = False) -> None:
        """Write the pending usage now; a failure keeps it (raised unless ``quiet``)."""
        if os.getpid() != self._pid:
            self._reset()
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        rows = [
            {"key_id": key_id, "uses": uses, "at": at, "ip": ip}
            for key_id, (uses, at, ip) in batch.items()
        ]
        try:
            with self._db.write() as conn:
                conn.execute(_USAGE_UPDATE, rows)
        except Exception as error:  # the store may be down: keep the counts, try later
            with self._lock:
                for key_id, (uses, at, ip) in batch.items():
                    entry = self._pending.setdefault(key_id, [0, at, ip])
                    entry[0] += uses
                    if at > entry[1]:
                        entry[1], entry[2] = at, ip
            if not quiet:
                raise
            log.warning("could not store API key usage (kept for a retry): %s", error)

    def close(self) -> None:
        """Stop the timer and write what is pending (best effort)."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush(quiet=True)


def _flush_usage_at_exit(ref: weakref.ref[ApiKeyUsage]) -> None:
    usage = ref()
    if usage is not None and not usage._closed:
        usage.close()
