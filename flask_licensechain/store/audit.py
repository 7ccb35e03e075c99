"""The audit log: who did what to which object, as a tamper-evident hash chain.

Design
======

Same transaction. ``AuditRepository.append`` is the first change listener of the unit of
work (``store/changes.py``): an event is written in the transaction of its change, and a
failed write rolls the change back.

The chain. Every event has a place ``seq`` (1, 2, 3... with no gap) and a MAC::

    mac = HMAC-SHA256(K, "lc-audit-event-v1" 0x00 prev_mac 0x00 canonical(content))

``prev_mac`` is the MAC of the event before (64 ``0`` for the first), so an event's MAC
covers, through its predecessors, the whole chain before it. ``content`` is the non-personal
part of the event: action, actor kind, id and name, request id, target, app id, data,
creation time (microseconds, UTC), the key id, and ``personal_digest`` (below).
``canonical`` is JSON with sorted keys, no blanks, UTF-8 (RFC 8785-like for the values
this log holds: strings, integers, booleans, null, lists, objects; no NaN).
``seq`` is not MAC'd: the chain's order is fixed by ``prev_mac``; ``seq`` lets ``verify``
tell a deleted event (a gap) from reordered ones.

The key. ``K = HKDF-SHA256(encryption key, salt=None, info="licensechain audit log v1")``
(RFC 5869), derived from the key that ``LICENSECHAIN_ENCRYPTION_KEY`` configures (or the
first key of an encryption keyring). Someone with only database access cannot compute a MAC,
so they cannot re-chain the log after an edit. Each event, checkpoint and the head carry the
``key_id`` of the key that MAC'd them; ``AuditKeys`` holds every key still needed to verify,
so the encryption key can be rotated: new events use the first key, old ones keep theirs.

Personal data. The actor's IP address and user agent and ``Change.personal`` (e-mail
addresses, names, hardware ids) are stored in columns outside the MAC: ``actor_ip``,
``actor_user_agent``, ``personal``, with a random ``personal_salt``. The MAC'd content holds
``personal_digest = HMAC-SHA256(K, "lc-audit-personal-v1" 0x00 salt 0x00 canonical(...))``,
so ``verify`` also catches an edit of the personal columns. An erasure (GDPR Art. 17) blanks
the four columns (``erase_personal``); the digest stays, the chain still verifies, and
without the salt the digest can no longer be matched against a guessed e-mail address.

Linear under concurrent writers. An append reads the chain's head (``lc_audit_head``: the
last ``seq`` and MAC, one row) with ``SELECT ... FOR UPDATE`` and moves it in the same
transaction (on PostgreSQL in the statement that inserts the event, a data-modifying
``WITH``: two round trips per append). On PostgreSQL the row lock queues concurrent
appends, as an advisory lock would, and also gives each one the head it must chain to. On
SQLite, a write transaction already holds the database's single write lock
(``BEGIN IMMEDIATE``). A service records its change
after its own row locks (a unit takes no row lock after its first ``record``), so the head
lock adds no deadlock.

The head also carries ``head_mac`` (HMAC over ``seq`` and ``mac``), so ``verify`` notices
events deleted from the end of the chain. What no MAC can show: a whole database restored
to an older copy (the head and the events together). Keep backups and exported logs apart.

Retention. ``prune(before)`` deletes the oldest events (a prefix of the chain, every one
created before ``before``) and writes a checkpoint: the ``seq`` and MAC of the last pruned
event, signed with ``K``. ``verify`` starts from the newest checkpoint: the first event left
must chain to its MAC. Deleting a checkpoint leaves a gap that ``verify`` reports.

``verify`` walks the chain in ``seq`` order and reports the first broken event:
``edited`` (its MAC or its personal digest does not match its columns, or it has personal
data but no salt: an erasure blanks them together), ``deleted`` (a gap: the event before it is
missing), ``reordered`` (it chains to an event that is elsewhere in the log), ``inserted`` (an
event without ``seq`` newer than the chain's first event), or ``unknown_key`` (MAC'd with a key
this configuration does not hold).

Events written before this design (``seq`` NULL) are listed, never verified; they must be
older (smaller row id) than the chain's first event, else they were inserted.

What no MAC kept in the same database can show: the log rolled back to an earlier valid state,
the tail deleted together with the head row restored from an older copy (or every event,
checkpoint and the head deleted). Anchor the head outside the database: ``audit verify
--json`` prints ``headSeq``; keep it, and a later ``headSeq`` below it is a rollback.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import secrets
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import field_limits as limits
from ..core.errors import InvalidRequest
from . import validation as check
from .apps import AppScope
from .changes import Actor, Change
from .database import Database
from .records import AuditRecord
from .retention import register_retention
from .schema import audit_checkpoints, audit_events, audit_head, to_utc

#: HKDF ``info`` of the audit MAC key (RFC 5869); changing it orphans every chain
MAC_KEY_INFO: Final = b"licensechain audit log v1"
#: the id of the one key of ``LICENSECHAIN_ENCRYPTION_KEY`` (as the encryption keyring names it)
DEFAULT_KEY_ID: Final = "default"
GENESIS: Final = "0" * 64
_EVENT_LABEL: Final = b"lc-audit-event-v1\x00"
_PERSONAL_LABEL: Final = b"lc-audit-personal-v1\x00"
_HEAD_LABEL: Final = b"lc-audit-head-v1\x00"
_CHECKPOINT_LABEL: Final = b"lc-audit-checkpoint-v1\x00"
_HEAD_ID: Final = 1
#: advisory lock id under which a missing head row is created (PostgreSQL)
_HEAD_CREATION_LOCK: Final = 0x4C430005
_BATCH: Final = 1000
#: the columns outside the MAC (``erase_personal`` blanks them with ``personal_salt``)
_PERSONAL_COLUMNS: Final = ("actor_ip", "actor_user_agent", "personal")
_CURSOR_PREFIX: Final = "ae1:"

# Past LICENSECHAIN_RETENTION_DAYS_IP the job blanks the personal columns of an event as
# ``erase_personal`` does (all four together, or ``verify`` reports an edit).
register_retention(
    audit_events,
    timestamp="created_at",
    ips=("actor_ip",),
    user_agents=("actor_user_agent",),
    blank_together=("personal", "personal_salt"),
)

Breach = Literal["edited", "deleted", "reordered", "inserted", "unknown_key"]

# Prebuilt statements: an append runs three, and building them anew costs more than running
# them (benchmarks/audit_write).
_INSERT_EVENT = sa.insert(audit_events)
_HEAD = sa.select(audit_head.c.seq, audit_head.c.mac).where(audit_head.c.id == _HEAD_ID)
_LOCK_HEAD = _HEAD.with_for_update()
_MOVE_HEAD = (
    sa.update(audit_head)
    .where(audit_head.c.id == _HEAD_ID)
    .values(
        seq=sa.bindparam("new_seq"),
        mac=sa.bindparam("new_mac"),
        key_id=sa.bindparam("new_key_id"),
        head_mac=sa.bindparam("new_head_mac"),
    )
)
#: PostgreSQL: the event and the head's move in one statement (a data-modifying WITH), so an
#: append costs two round trips, not three
_INSERT_AND_MOVE = sa.insert(audit_events).add_cte(_MOVE_HEAD.cte("lc_audit_head_moved"))


class AuditKeyMissing(RuntimeError):
    """The store has no audit MAC key (``AuditRepository.use_keys``): it refuses to write an
    event it could not chain."""


def derive_mac_key(encryption_key: bytes) -> bytes:
    """The 32-byte audit MAC key of a 32-byte encryption key (HKDF-SHA256, RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=MAC_KEY_INFO).derive(
        encryption_key
    )


@dataclass(frozen=True, repr=False)
class AuditKeys:
    """The audit MAC keys by key id; ``current`` MACs new events, the others only verify."""

    current: str
    keys: Mapping[str, bytes]

    @classmethod
    def derive(cls, encryption_keys: Sequence[tuple[str, bytes]]) -> AuditKeys:
        """From ``[(key id, encryption key), ...]``, the first one current (the form of an
        encryption keyring). ``ValueError`` for an empty list."""
        if not encryption_keys:
            raise ValueError("at least one encryption key is needed")
        keys = {key_id: derive_mac_key(key) for key_id, key in encryption_keys}
        return cls(current=encryption_keys[0][0], keys=keys)

    def __repr__(self) -> str:
        return f"AuditKeys(current={self.current!r}, ids={sorted(self.keys)!r})"

    def mac(self, key_id: str, label: bytes, *parts: bytes) -> str | None:
        """HMAC-SHA256 hex of ``label`` and ``parts`` joined by NUL, or ``None`` when
        ``key_id`` is not held."""
        key = self.keys.get(key_id)
        if key is None:
            return None
        return hmac.new(key, label + b"\x00".join(parts), hashlib.sha256).hexdigest()


def canonical(value: Any) -> bytes:
    """JSON with sorted keys and no blanks, UTF-8 (NaN refused)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _time(value: datetime) -> str:
    return to_utc(value).isoformat(timespec="microseconds")


def _content(row: Mapping[Any, Any]) -> bytes:
    """The MAC'd content of an event row (the module docstring lists it)."""
    return canonical(
        {
            "action": row["action"],
            "actor": {"kind": row["actor_kind"], "id": row["actor"], "name": row["actor_name"]},
            "request_id": row["request_id"],
            "target": row["target"],
            "app_id": row["app_id"],
            "data": row["data"],
            "created_at": _time(row["created_at"]),
            "key_id": row["key_id"],
            "personal_digest": row["personal_digest"],
        }
    )


def _personal_content(row: Mapping[Any, Any]) -> bytes:
    return canonical(
        {"ip": row["actor_ip"], "user_agent": row["actor_user_agent"], "personal": row["personal"]}
    )


def _json_object(value: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``value`` as a plain JSON object (no size limit: an update's before and after of a
    large field must not make the change fail). ``InvalidRequest`` for NaN, Infinity or a
    value JSON cannot hold."""
    data = dict(value)
    try:
        canonical(data)
    except (TypeError, ValueError) as error:
        raise InvalidRequest(f"audit {name} must be plain JSON: {error}") from error
    return data


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=int(row.id),
        action=row.action,
        actor=row.actor,
        target=row.target,
        data=dict(row.data),
        created_at=row.created_at,
        seq=None if row.seq is None else int(row.seq),
        actor_kind=row.actor_kind,
        actor_name=row.actor_name,
        request_id=row.request_id,
        app_id=row.app_id,
        actor_ip=row.actor_ip,
        actor_user_agent=row.actor_user_agent,
        personal=None if row.personal is None else dict(row.personal),
    )


# -- verification report ---------------------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """The first broken place of the chain: the event at ``seq`` (its row ``id``; ``None``
    for the head or a checkpoint) and how it is broken."""

    seq: int
    id: int | None
    breach: Breach
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": self.id, "breach": self.breach, "detail": self.detail}


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: ``count`` events proved (after the checkpoint, if any),
    ``legacy`` events from before the chain, and the first ``broken`` place or ``None``."""

    count: int
    legacy: int
    checkpoint_seq: int | None
    head_seq: int
    broken: Broken | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "legacy": self.legacy,
            "checkpointSeq": self.checkpoint_seq,
            "headSeq": self.head_seq,
            "broken": None if self.broken is None else self.broken.as_json(),
        }


@dataclass(frozen=True)
class Prune:
    """What ``prune`` removed: ``events`` chained events through ``seq`` (``None``: none),
    ``legacy`` events from before the chain."""

    events: int
    legacy: int
    seq: int | None


@dataclass(frozen=True)
class AuditFilter:
    """The readers' filters (``None``: any). ``app_id`` is one app id, a collection of
    them (events of no app never match it), or an API key's ``AppScope`` (``api.auth.
    app_filter``: its environment's apps, its app set; events of no app only for a key of
    every live app)."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    app_id: str | Collection[str] | AppScope | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(event_id: int) -> str:
    """An opaque cursor: the page continues with events older than ``event_id``."""
    raw = f"{_CURSOR_PREFIX}{event_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The event id of ``encode_cursor``; ``InvalidRequest`` for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        event_id = int(text[len(_CURSOR_PREFIX) :])
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("'cursor' is not a cursor this server gave.") from None
    if not 0 < event_id < 2**63:
        raise InvalidRequest("'cursor' is not a cursor this server gave.")
    return event_id


class AuditRepository:
    """The audit events (module docstring). ``use_keys`` before the first append."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._keys: AuditKeys | None = None

    def use_keys(self, keys: AuditKeys) -> None:
        """Chain new events with ``keys.current``; verify with any of ``keys``."""
        self._keys = keys

    @property
    def keys(self) -> AuditKeys:
        if self._keys is None:
            raise AuditKeyMissing(
                "the audit log has no MAC key: AuditRepository.use_keys() was not called"
            )
        return self._keys

    # -- writing ------------------------------------------------------------------------

    def record(
        self,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        data: Mapping[str, Any] | None = None,
        personal: Mapping[str, Any] | None = None,
        ip: str | None = None,
    ) -> None:
        """Append an event of ``action`` by a system actor named ``actor`` (default
        ``system``), in its own transaction. ``personal`` (e-mail addresses, names) and
        ``ip`` (the actor's address) are stored outside the MAC (module docstring); ``data``
        must hold none. Raises ``InvalidRequest`` for a bad field."""
        change = Change(
            action=check.required_text(action, "action"),
            target=check.optional_text(target, "target"),
            data=check.metadata(data, "data"),
            personal=check.metadata(personal, "personal"),
        )
        who = Actor(
            kind="system",
            id=check.optional_text(actor, "actor") or "system",
            ip=check.optional_text(ip, "ip"),
        )
        with self._db.write() as conn:
            self.append(conn, who, change)

    def append(self, conn: sa.Connection, actor: Actor, change: Change) -> None:
        """The audit log's change listener: chain ``change`` in the unit's transaction.

        Raises ``AuditKeyMissing``, ``InvalidRequest`` for data that is not JSON, and the
        store's errors (each rolls the unit back)."""
        keys = self.keys
        key_id = keys.current
        personal = _json_object(change.personal, "personal") if change.personal else None
        user_agent = actor.user_agent[: limits.USER_AGENT] if actor.user_agent else None
        row: dict[str, Any] = {
            "action": change.action,
            "actor": actor.id,
            "actor_kind": actor.kind,
            "actor_name": actor.name,
            "request_id": actor.request_id,
            "target": change.target,
            "app_id": change.app_id,
            "data": _json_object(change.data, "data"),
            "key_id": key_id,
            "actor_ip": actor.ip,
            "actor_user_agent": user_agent,
            "personal": personal,
            "personal_salt": None,
            "personal_digest": None,
        }
        if personal is not None or actor.ip is not None or user_agent is not None:
            salt = secrets.token_hex(16)
            row["personal_salt"] = salt
            row["personal_digest"] = keys.mac(
                key_id, _PERSONAL_LABEL, salt.encode(), _personal_content(row)
            )
        seq, prev_mac = self._lock_head(conn)
        row["seq"] = seq + 1
        row["prev_mac"] = prev_mac
        # The time is read under the head lock: the chain's order is also time order.
        row["created_at"] = datetime.now(UTC)
        mac = keys.mac(key_id, _EVENT_LABEL, prev_mac.encode(), _content(row))
        assert mac is not None
        row["mac"] = mac
        head = self._head_values(row["seq"], mac, key_id)
        if conn.dialect.name == "postgresql":
            conn.execute(_INSERT_AND_MOVE, {**row, **head})
        else:
            conn.execute(_INSERT_EVENT, row)
            conn.execute(_MOVE_HEAD, head)

    def _lock_head(self, conn: sa.Connection) -> tuple[int, str]:
        """The chain's last seq and MAC, the head row locked until the transaction ends."""
        head = conn.execute(_LOCK_HEAD).first()
        if head is None:  # a store made from the tables, not the migrations
            # Writers that all found no row queue here; the first creates it.
            self._db.serialize(conn, _HEAD_CREATION_LOCK)
            head = conn.execute(_LOCK_HEAD).first()
            if head is None:
                conn.execute(sa.insert(audit_head).values(id=_HEAD_ID, seq=0, mac=GENESIS))
                head = conn.execute(_LOCK_HEAD).one()
        return int(head.seq), str(head.mac)

    def _head_values(self, seq: int, mac: str, key_id: str) -> dict[str, Any]:
        """The parameters of ``_MOVE_HEAD``: the head at event ``seq``, MAC'd."""
        head_mac = self.keys.mac(key_id, _HEAD_LABEL, str(seq).encode(), mac.encode())
        return {"new_seq": seq, "new_mac": mac, "new_key_id": key_id, "new_head_mac": head_mac}

    def erase_personal(self, conn: sa.Connection, *, targets: Iterable[str]) -> int:
        """Blank the personal columns of the events about ``targets`` (license ids, app
        ids...), in the caller's transaction; the chain still verifies. Returns the number
        of events blanked."""
        wanted = builtins.list(targets)
        if not wanted:
            return 0
        result = conn.execute(
            sa.update(audit_events)
            .where(audit_events.c.target.in_(wanted), audit_events.c.personal_salt.is_not(None))
            .values(actor_ip=None, actor_user_agent=None, personal=None, personal_salt=None)
        )
        return int(result.rowcount)

    # -- reading ------------------------------------------------------------------------

    def key_ids_in_use(self) -> set[str]:
        """The key ids whose MAC keys the stored events, checkpoints and head need for
        ``verify``: an encryption key must stay configured while its id is here."""
        found: set[str] = set()
        with self._db.read() as conn:
            for table in (audit_events, audit_checkpoints, audit_head):
                if "key_id" in table.c:
                    column = table.c.key_id
                    statement = sa.select(column).where(column.is_not(None)).distinct()
                    found.update(str(value) for (value,) in conn.execute(statement))
        return found

    def list(self, limit: int = 100) -> builtins.list[AuditRecord]:
        """Newest first."""
        limit = check.integer(limit, "limit", minimum=1, maximum=limits.AUDIT_PAGE)
        statement = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        with self._db.single() as conn:
            rows = conn.execute(statement).all()
        return [_record(row) for row in rows]

    def page(
        self, where: AuditFilter, *, limit: int, cursor: str | None = None
    ) -> tuple[builtins.list[AuditRecord], str | None]:
        """One page of events matching ``where``, newest first, and the cursor of the next
        page (``None`` on the last). Raises ``InvalidRequest`` for a bad cursor or limit."""
        limit = check.integer(limit, "limit", minimum=1, maximum=limits.AUDIT_PAGE)
        c = audit_events.c
        conditions: builtins.list[sa.ColumnElement[bool]] = []
        for column, value in (
            (c.actor, where.actor),
            (c.action, where.action),
            (c.target, where.target),
        ):
            if value is not None:
                conditions.append(column == value)
        if isinstance(where.app_id, AppScope):
            conditions.append(where.app_id.clause(c.app_id))
        elif isinstance(where.app_id, str):
            conditions.append(c.app_id == where.app_id)
        elif where.app_id is not None:
            conditions.append(c.app_id.in_(builtins.list(where.app_id)))
        if where.since is not None:
            conditions.append(c.created_at >= to_utc(where.since))
        if where.until is not None:
            conditions.append(c.created_at < to_utc(where.until))
        if cursor is not None:
            conditions.append(c.id < decode_cursor(cursor))
        statement = (
            sa.select(audit_events).where(*conditions).order_by(c.id.desc()).limit(limit + 1)
        )
        with self._db.single() as conn:
            rows = conn.execute(statement).all()
        records = [_record(row) for row in rows[:limit]]
        following = encode_cursor(records[-1].id) if len(rows) > limit else None
        return records, following

    # -- verification -------------------------------------------------------------------

    def verify(self) -> Verification:
        """Walk the chain from the newest checkpoint (module docstring); read-only."""
        keys = self.keys
        with self._db.read() as conn:
            return _Walk(conn, keys).run()

    def prune(self, conn: sa.Connection, before: datetime) -> Prune:
        """In the caller's unit: delete the events created before ``before`` that open the
        chain (up to the first newer one) and the legacy events before it, and sign a
        checkpoint at the last chained event deleted. Raises ``InvalidRequest`` when the
        chain does not verify (a prune must not erase the evidence)."""
        keys = self.keys
        before = to_utc(before)
        self._lock_head(conn)
        checked = _Walk(conn, keys).run()
        if checked.broken is not None:
            raise InvalidRequest(
                "The audit chain does not verify; prune refused: "
                f"event {checked.broken.seq} {checked.broken.breach}."
            )
        c = audit_events.c
        legacy = conn.execute(
            sa.delete(audit_events).where(c.seq.is_(None), c.created_at < before)
        ).rowcount
        first_newer = conn.scalar(
            sa.select(sa.func.min(c.seq)).where(c.seq.is_not(None), c.created_at >= before)
        )
        last_seq = conn.scalar(
            sa.select(sa.func.max(c.seq)).where(
                c.seq.is_not(None),
                c.created_at < before,
                *(() if first_newer is None else (c.seq < first_newer,)),
            )
        )
        if last_seq is None:
            return Prune(events=0, legacy=int(legacy), seq=None)
        mac = conn.scalar(sa.select(c.mac).where(c.seq == last_seq))
        deleted = conn.execute(
            sa.delete(audit_events).where(c.seq.is_not(None), c.seq <= last_seq)
        ).rowcount
        now = datetime.now(UTC)
        checkpoint = {
            "seq": int(last_seq),
            "mac": str(mac),
            "pruned": int(deleted),
            "before": before,
            "created_at": now,
            "key_id": keys.current,
        }
        signature = keys.mac(keys.current, _CHECKPOINT_LABEL, _checkpoint_content(checkpoint))
        conn.execute(sa.insert(audit_checkpoints).values(**checkpoint, signature=signature))
        return Prune(events=int(deleted), legacy=int(legacy), seq=int(last_seq))


def _checkpoint_content(row: Mapping[Any, Any]) -> bytes:
    return canonical(
        {
            "seq": int(row["seq"]),
            "mac": row["mac"],
            "pruned": int(row["pruned"]),
            "before": _time(row["before"]),
            "created_at": _time(row["created_at"]),
            "key_id": row["key_id"],
        }
    )


class _Walk:
    """One verification pass over the chain (``AuditRepository.verify``)."""

    def __init__(self, conn: sa.Connection, keys: AuditKeys) -> None:
        self.conn = conn
        self.keys = keys

    def run(self) -> Verification:
        c = audit_events.c
        legacy = int(
            self.conn.scalar(
                sa.select(sa.func.count()).select_from(audit_events).where(c.seq.is_(None))
            )
            or 0
        )
        head = self.conn.execute(sa.select(audit_head).where(audit_head.c.id == _HEAD_ID)).first()
        head_seq = 0 if head is None else int(head.seq)
        checkpoint = self.conn.execute(
            sa.select(audit_checkpoints).order_by(audit_checkpoints.c.seq.desc()).limit(1)
        ).first()
        start_seq, prev = 0, GENESIS
        if checkpoint is not None:
            broken = self._check_checkpoint(checkpoint._mapping)
            if broken is not None:
                return Verification(0, legacy, int(checkpoint.seq), head_seq, broken)
            start_seq, prev = int(checkpoint.seq), str(checkpoint.mac)
        checkpoint_seq = None if checkpoint is None else start_seq
        expected, count = start_seq + 1, 0
        last_id: int | None = None
        inserted = self._legacy_after_chain_start()
        if inserted is not None:
            return Verification(0, legacy, checkpoint_seq, head_seq, inserted)
        for row in self._events(start_seq):
            broken = self._check_event(row, expected, prev)
            if broken is not None:
                return Verification(count, legacy, checkpoint_seq, head_seq, broken)
            count += 1
            expected, prev, last_id = int(row["seq"]) + 1, str(row["mac"]), int(row["id"])
        broken = self._check_head(head, expected - 1, prev, last_id)
        return Verification(count, legacy, checkpoint_seq, head_seq, broken)

    def _legacy_after_chain_start(self) -> Broken | None:
        """An event without ``seq`` predates the chain, so its row id is below every
        chained event's: a newer one was inserted by hand (reported at the chained event it
        follows). What no check can show: a forged one given a small id."""
        c = audit_events.c
        first_chained = self.conn.scalar(sa.select(sa.func.min(c.id)).where(c.seq.is_not(None)))
        if first_chained is None:
            return None
        row = self.conn.execute(
            sa.select(c.id).where(c.seq.is_(None), c.id > first_chained).order_by(c.id).limit(1)
        ).first()
        if row is None:
            return None
        follows = self.conn.scalar(
            sa.select(sa.func.max(c.seq)).where(c.seq.is_not(None), c.id < row.id)
        )
        return Broken(
            int(follows or 0), int(row.id), "inserted", "an event without a place in the chain"
        )

    def _events(self, after_seq: int) -> Iterator[Mapping[Any, Any]]:
        c = audit_events.c
        while True:
            rows = self.conn.execute(
                sa.select(audit_events).where(c.seq > after_seq).order_by(c.seq).limit(_BATCH)
            ).all()
            for row in rows:
                yield row._mapping
            if len(rows) < _BATCH:
                return
            after_seq = int(rows[-1].seq)

    def _check_checkpoint(self, row: Mapping[Any, Any]) -> Broken | None:
        seq = int(row["seq"])
        signature = self.keys.mac(row["key_id"], _CHECKPOINT_LABEL, _checkpoint_content(row))
        if signature is None:
            return Broken(seq, None, "unknown_key", f"checkpoint signed by key {row['key_id']!r}")
        if not hmac.compare_digest(signature, str(row["signature"])):
            return Broken(seq, None, "edited", f"the checkpoint at event {seq} was altered")
        return None

    def _check_event(self, row: Mapping[Any, Any], expected: int, prev: str) -> Broken | None:
        seq, event_id = int(row["seq"]), int(row["id"])
        key_id = str(row["key_id"])
        mac = self.keys.mac(key_id, _EVENT_LABEL, str(row["prev_mac"]).encode(), _content(row))
        if mac is None:
            return Broken(seq, event_id, "unknown_key", f"MAC'd by key {key_id!r}")
        if not hmac.compare_digest(mac, str(row["mac"])):
            return Broken(seq, event_id, "edited", "its content does not match its MAC")
        salt = row["personal_salt"]
        if salt is not None:
            digest = self.keys.mac(
                key_id, _PERSONAL_LABEL, str(salt).encode(), _personal_content(row)
            )
            if not hmac.compare_digest(str(digest), str(row["personal_digest"])):
                return Broken(seq, event_id, "edited", "its personal data was altered")
        elif any(row[name] is not None for name in _PERSONAL_COLUMNS):
            # An erasure blanks every personal column with the salt; personal data without
            # a salt was written by someone else.
            return Broken(seq, event_id, "edited", "its personal data was altered")
        if row["prev_mac"] == prev:
            if seq != expected:
                return Broken(seq, event_id, "edited", f"its seq was changed (expected {expected})")
            return None
        if self._mac_exists(str(row["prev_mac"])):
            return Broken(seq, event_id, "reordered", "it follows an event found elsewhere")
        if seq != expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            return Broken(seq, event_id, "deleted", f"event(s) {missing} before it are missing")
        return Broken(seq, event_id, "deleted", "the event before it is missing")

    def _mac_exists(self, mac: str) -> bool:
        found = self.conn.scalar(
            sa.select(audit_events.c.id).where(audit_events.c.mac == mac).limit(1)
        )
        return found is not None

    def _check_head(
        self, head: Any, last_seq: int, last_mac: str, last_id: int | None
    ) -> Broken | None:
        if head is None:
            return (
                None if last_seq == 0 else Broken(last_seq, None, "deleted", "the head is missing")
            )
        if int(head.seq) == 0 and head.head_mac is None and last_seq == 0:
            return None  # an empty chain
        if head.key_id is None or head.head_mac is None:
            return Broken(int(head.seq), None, "edited", "the chain's head was altered")
        key_id = str(head.key_id)
        head_mac = self.keys.mac(
            key_id, _HEAD_LABEL, str(head.seq).encode(), str(head.mac).encode()
        )
        if head_mac is None:
            return Broken(int(head.seq), None, "unknown_key", f"head MAC'd by key {key_id!r}")
        if not hmac.compare_digest(head_mac, str(head.head_mac)):
            return Broken(int(head.seq), None, "edited", "the chain's head was altered")
        if int(head.seq) > last_seq:
            first = last_seq + 1
            return Broken(
                first, None, "deleted", f"the newest event(s) {first}..{head.seq} are missing"
            )
        if int(head.seq) != last_seq or head.mac != last_mac:
            return Broken(last_seq, last_id, "edited", "the chain ends past its head")
        return None
