"""Webhook endpoints, the outbox of events, and their deliveries (issue 12).

Tables (on the store's one ``MetaData``, created by revision ``r0006``):

- ``lc_webhook_endpoints``: where events go. ``app_id`` NULL receives every app's events
  (and those of no app); ``source`` is ``api`` (``POST /v1/webhooks``) or ``app`` (an
  app's ``webhook_url``, kept in step by the outbox). The signing secret is kept sealed
  (AES-256-GCM, ``flask_licensechain/webhooks/secrets.py``); during a rotation's overlap
  the previous one too.
- ``lc_webhook_deliveries``: one row per (event, endpoint), with the event's exact JSON
  payload (the bytes signed): the outbox. Written in the transaction of the change that
  caused it, with one ``INSERT ... SELECT`` over the subscribed endpoints (``add_event``),
  claimed by workers
  (``claim_due``), finished with ``finish``. A claim is a lease: ``next_attempt_at`` moves
  to the lease's end and ``lease_owner`` names the worker, so a worker that dies mid-attempt
  leaves the delivery due again when the lease ends (at-least-once), and a late result of a
  lost lease is refused (fencing). PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``.
- ``lc_webhook_attempts``: each attempt: status code, latency (ms), error.
- ``lc_license_expirations``: the license expiries already announced (the sweeper's memory:
  one ``license.expire`` per license and expiry date).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..core.errors import NotFound
from .apps import EVERY_APP, AppScope
from .database import Database
from .schema import UTCDateTime, metadata
from .sealed import register_sealed_column

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

webhook_endpoints = sa.Table(
    "lc_webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(40), sa.ForeignKey("lc_apps.id", ondelete="CASCADE")),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("sealed_secret", sa.LargeBinary),
    sa.Column("sealed_previous_secret", sa.LargeBinary),
    sa.Column("previous_secret_expires_at", UTCDateTime),
    sa.Column("failing_since", UTCDateTime),
    sa.Column("disabled_at", UTCDateTime),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_lc_webhook_endpoints_app", "app_id"),
)

webhook_deliveries = sa.Table(
    "lc_webhook_deliveries",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "endpoint_id",
        sa.String(40),
        sa.ForeignKey("lc_webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # the event: its id (the webhook-id header, the same for every endpoint and retry), type,
    # app, and its exact JSON payload (the bytes signed)
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("app_id", sa.String(40)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending / succeeded / dead
    sa.Column("attempts", sa.Integer, nullable=False),  # in this run (a manual retry resets)
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime),  # NULL once finished
    sa.Column("lease_owner", sa.String(40)),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_lc_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_lc_webhook_deliveries_endpoint", "endpoint_id", "id"),
)

webhook_attempts = sa.Table(
    "lc_webhook_attempts",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        _ID,
        sa.ForeignKey("lc_webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempted_at", UTCDateTime, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
    sa.Index("ix_lc_webhook_attempts_delivery", "delivery_id"),
)


def secret_context(endpoint_id: str) -> bytes:
    """The associated data of an endpoint's sealed secrets (``core/sealing.py``): a value
    copied onto another endpoint does not unseal there."""
    return b"lc_webhooks.secret:" + endpoint_id.encode()


# The signing secrets are sealed: key rotation re-seals them, start-up checks their key ids.
for _column in ("sealed_secret", "sealed_previous_secret"):
    register_sealed_column(webhook_endpoints, _column, context=lambda row: secret_context(row.id))

license_expirations = sa.Table(
    "lc_license_expirations",
    metadata,
    sa.Column(
        "license_id",
        sa.String(40),
        sa.ForeignKey("lc_licenses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
)

PENDING: Final = "pending"
SUCCEEDED: Final = "succeeded"
DEAD: Final = "dead"
#: ``events`` member meaning every event type
ALL_EVENTS: Final = "*"
SOURCE_API: Final = "api"
SOURCE_APP: Final = "app"


@dataclass(frozen=True)
class WebhookEndpointRecord:
    id: str
    app_id: str | None
    url: str
    description: str | None
    events: tuple[str, ...]
    source: str  # api / app
    enabled: bool
    sealed_secret: bytes | None = field(repr=False)
    sealed_previous_secret: bytes | None = field(repr=False)
    previous_secret_expires_at: datetime | None
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime

    def subscribes(self, event_type: str) -> bool:
        return ALL_EVENTS in self.events or event_type in self.events


@dataclass(frozen=True)
class AttemptRecord:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    created_at: datetime
    history: tuple[AttemptRecord, ...] = ()


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery a worker holds the lease of, with what it needs to send it."""

    id: int
    endpoint_id: str
    event_id: str
    payload: str
    attempts: int  # including this one
    max_attempts: int
    lease_owner: str
    endpoint: WebhookEndpointRecord


@dataclass(frozen=True)
class Outcome:
    """What became of a claimed delivery's attempt: ``next_attempt_at`` when it failed and
    is to be tried again, ``None`` when it succeeded or was the last."""

    delivery: ClaimedDelivery
    attempt: AttemptRecord
    next_attempt_at: datetime | None

    @property
    def succeeded(self) -> bool:
        code = self.attempt.status_code
        return code is not None and 200 <= code < 300


def endpoint_record(row: Any) -> WebhookEndpointRecord:
    return WebhookEndpointRecord(
        id=row.id,
        app_id=row.app_id,
        url=row.url,
        description=row.description,
        events=tuple(row.events or ()),
        source=row.source,
        enabled=bool(row.enabled),
        sealed_secret=row.sealed_secret,
        sealed_previous_secret=row.sealed_previous_secret,
        previous_secret_expires_at=row.previous_secret_expires_at,
        failing_since=row.failing_since,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_DELIVERY_COLUMNS = (
    webhook_deliveries.c.id,
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.event_id,
    webhook_deliveries.c.event_type,
    webhook_deliveries.c.status,
    webhook_deliveries.c.attempts,
    webhook_deliveries.c.max_attempts,
    webhook_deliveries.c.next_attempt_at,
    webhook_deliveries.c.last_status_code,
    webhook_deliveries.c.last_error,
    webhook_deliveries.c.last_attempt_at,
    webhook_deliveries.c.created_at,
)


def _like_escape(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _queue_statement(where: sa.ColumnElement[bool]) -> sa.Insert:
    """``INSERT INTO deliveries SELECT <the event>, endpoint id FROM endpoints WHERE ...``:
    built once, so SQLAlchemy keeps its compiled form and its cache key."""
    d = webhook_deliveries.c
    rows = sa.select(
        webhook_endpoints.c.id,
        sa.bindparam("event_id", type_=sa.String),
        sa.bindparam("event_type", type_=sa.String),
        sa.bindparam("app_id", type_=sa.String),
        sa.bindparam("payload", type_=sa.Text),
        sa.literal(PENDING, sa.String),
        sa.literal(0, sa.Integer),
        sa.bindparam("max_attempts", type_=sa.Integer),
        sa.bindparam("now", type_=UTCDateTime),
        sa.bindparam("now", type_=UTCDateTime),
    ).where(where)
    columns = [
        d.endpoint_id,
        d.event_id,
        d.event_type,
        d.app_id,
        d.payload,
        d.status,
        d.attempts,
        d.max_attempts,
        d.next_attempt_at,
        d.created_at,
    ]
    return sa.insert(webhook_deliveries).from_select(columns, rows)


_e = webhook_endpoints.c
_events_text = sa.cast(_e.events, sa.Text)
_QUEUE_FOR_SUBSCRIBERS: Final = _queue_statement(
    sa.and_(
        _e.enabled.is_(True),
        sa.or_(_e.app_id.is_(None), _e.app_id == sa.bindparam("app_id", type_=sa.String)),
        sa.or_(
            _events_text.like(f'%"{ALL_EVENTS}"%'),
            _events_text.like(sa.bindparam("type_pattern", type_=sa.Text), escape="/"),
        ),
        _e.id != sa.bindparam("exclude", type_=sa.String),
    )
)
_d = webhook_deliveries.c
#: a claimed delivery's outcome, only while its lease is still this worker's (fencing)
_FINISH: Final = (
    sa.update(webhook_deliveries)
    .where(
        _d.id == sa.bindparam("target", type_=_ID),
        _d.lease_owner == sa.bindparam("owner", type_=sa.String),
    )
    .values(
        status=sa.bindparam("status", type_=sa.String),
        next_attempt_at=sa.bindparam("next_at", type_=UTCDateTime),
        lease_owner=None,
        last_status_code=sa.bindparam("code", type_=sa.Integer),
        last_error=sa.bindparam("error", type_=sa.Text),
        last_attempt_at=sa.bindparam("at", type_=UTCDateTime),
    )
)
_QUEUE_FOR_ONE: Final = _queue_statement(_e.id == sa.bindparam("only", type_=sa.String))


class WebhookRepository:
    """Endpoints, events and deliveries. Methods taking ``conn`` run in the caller's
    transaction (the outbox listener's unit of work); the others are their own."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- endpoints -----------------------------------------------------------------------

    def insert_endpoint(self, values: Mapping[str, Any]) -> WebhookEndpointRecord:
        with self._db.write() as conn:
            conn.execute(sa.insert(webhook_endpoints).values(**values))
            row = conn.execute(
                sa.select(webhook_endpoints).where(webhook_endpoints.c.id == values["id"])
            ).one()
        return endpoint_record(row)

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpointRecord | None:
        with self._db.single() as conn:
            row = conn.execute(
                sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
            ).one_or_none()
        return None if row is None else endpoint_record(row)

    def update_endpoint(
        self,
        endpoint_id: str,
        values: Mapping[str, Any],
        *,
        only_if: sa.ColumnElement[bool] | None = None,
    ) -> WebhookEndpointRecord | None:
        """Set ``values``; ``None`` when the endpoint is gone (or ``only_if`` is false)."""
        statement = sa.update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        if only_if is not None:
            statement = statement.where(only_if)
        with self._db.write() as conn:
            if conn.execute(statement.values(**values)).rowcount == 0:
                return None
            row = conn.execute(
                sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
            ).one()
        return endpoint_record(row)

    def set_first_secret(self, endpoint_id: str, sealed: bytes) -> bytes:
        """Give an endpoint without a secret ``sealed``; the endpoint's sealed secret after
        (another worker's, when it was first). ``NotFound`` when the endpoint is gone."""
        table = webhook_endpoints
        with self._db.write() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.id == endpoint_id, table.c.sealed_secret.is_(None))
                .values(sealed_secret=sealed)
            )
            stored = conn.execute(
                sa.select(table.c.sealed_secret).where(table.c.id == endpoint_id)
            ).scalar()
        if stored is None:
            raise NotFound("Webhook not found.")
        return bytes(stored)

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self._db.write() as conn:
            deleted = conn.execute(
                sa.delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
            ).rowcount
        if not deleted:
            raise NotFound("Webhook not found.")

    def list_endpoints(
        self,
        *,
        app_id: str | None = None,
        page: int = 1,
        limit: int = 50,
        scope: AppScope = EVERY_APP,
    ) -> tuple[builtins.list[WebhookEndpointRecord], int]:
        """One page of endpoints (oldest first) and the total, of ``app_id`` when given, of
        the apps in ``scope`` (an API key's, ``api.auth.app_filter``)."""
        where: builtins.list[sa.ColumnElement[bool]] = [scope.clause(webhook_endpoints.c.app_id)]
        if app_id is not None:
            where.append(webhook_endpoints.c.app_id == app_id)
        query = (
            sa.select(webhook_endpoints)
            .where(*where)
            .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
            .limit(limit)
            .offset((page - 1) * limit)
        )
        count = sa.select(sa.func.count()).select_from(webhook_endpoints).where(*where)
        with self._db.read() as conn:
            rows = conn.execute(query).all()
            total = int(conn.execute(count).scalar_one())
        return [endpoint_record(row) for row in rows], total

    def endpoints_for(self, conn: sa.Connection, app_id: str | None) -> builtins.list[Any]:
        """The enabled endpoints that receive events of ``app_id``: (id, events) rows."""
        scope: sa.ColumnElement[bool] = webhook_endpoints.c.app_id.is_(None)
        if app_id is not None:
            scope = sa.or_(scope, webhook_endpoints.c.app_id == app_id)
        query = sa.select(webhook_endpoints.c.id, webhook_endpoints.c.events).where(
            webhook_endpoints.c.enabled.is_(True), scope
        )
        return list(conn.execute(query).all())

    def app_endpoint_state(self, conn: sa.Connection, app_id: str) -> tuple[str | None, Any]:
        """The app's ``webhook_url`` and its managed endpoint row (id, url) or ``None``."""
        apps = metadata.tables["lc_apps"]
        url = conn.execute(sa.select(apps.c.webhook_url).where(apps.c.id == app_id)).scalar()
        row = conn.execute(
            sa.select(webhook_endpoints.c.id, webhook_endpoints.c.url).where(
                webhook_endpoints.c.app_id == app_id,
                webhook_endpoints.c.source == SOURCE_APP,
            )
        ).first()
        return url, row

    def sync_app_endpoint(self, conn: sa.Connection, app_id: str, now: datetime) -> None:
        """Keep the endpoint of the app's ``webhook_url`` in step with it, in the caller's
        transaction: made when the URL is set (every event type; its secret is made at
        first use), moved and enabled again when the URL changes, removed when cleared."""
        url, row = self.app_endpoint_state(conn, app_id)
        table = webhook_endpoints
        if url is None:
            if row is not None:
                conn.execute(sa.delete(table).where(table.c.id == row.id))
            return
        if row is None:
            conn.execute(
                sa.insert(table).values(
                    id=str(uuid.uuid4()),
                    app_id=app_id,
                    url=url,
                    events=[ALL_EVENTS],
                    source=SOURCE_APP,
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        elif row.url != url:
            conn.execute(
                sa.update(table)
                .where(table.c.id == row.id)
                .values(
                    url=url,
                    enabled=True,
                    failing_since=None,
                    disabled_at=None,
                    disabled_reason=None,
                    updated_at=now,
                )
            )

    # -- the outbox ----------------------------------------------------------------------

    def add_event(
        self,
        conn: sa.Connection,
        *,
        event_id: str,
        event_type: str,
        app_id: str | None,
        payload: str,
        now: datetime,
        max_attempts: int,
        only: str | None = None,
        exclude: str | None = None,
    ) -> int:
        """Queue ``payload`` for every enabled endpoint that subscribes to ``event_type``
        among those of ``app_id`` and those of every app (or for endpoint ``only``, enabled
        or not), except ``exclude``, in the caller's transaction: one ``INSERT ... SELECT``
        (built once). Returns the deliveries made."""
        params = {
            "event_id": event_id,
            "event_type": event_type,
            "app_id": app_id,
            "payload": payload,
            "max_attempts": max_attempts,
            "now": now,
        }
        if only is not None:
            return int(conn.execute(_QUEUE_FOR_ONE, {**params, "only": only}).rowcount)
        params["type_pattern"] = f'%"{_like_escape(event_type)}"%'
        params["exclude"] = exclude or ""
        return int(conn.execute(_QUEUE_FOR_SUBSCRIBERS, params).rowcount)

    def claim_one(
        self, endpoint_id: str, event_id: str, *, owner: str, now: datetime, lease: timedelta
    ) -> ClaimedDelivery | None:
        """Lease the pending delivery of ``event_id`` to ``endpoint_id`` (a test event,
        sent at once, whether the endpoint is enabled or not)."""
        found = self._claim(
            [
                webhook_deliveries.c.endpoint_id == endpoint_id,
                webhook_deliveries.c.event_id == event_id,
                webhook_deliveries.c.status == PENDING,
            ],
            owner,
            now=now,
            lease=lease,
            limit=1,
        )
        return found[0] if found else None

    def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int
    ) -> builtins.list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries of enabled endpoints to ``owner``.

        Each claim counts as an attempt and moves ``next_attempt_at`` to ``now + lease``:
        if the worker dies, the delivery is due again then. On PostgreSQL rows that another
        worker is claiming are skipped (``FOR UPDATE SKIP LOCKED``), so workers never wait
        on each other and never take the same delivery at the same time.
        """
        enabled = sa.select(webhook_endpoints.c.id).where(webhook_endpoints.c.enabled.is_(True))
        return self._claim(
            [
                webhook_deliveries.c.status == PENDING,
                webhook_deliveries.c.next_attempt_at <= now,
                webhook_deliveries.c.endpoint_id.in_(enabled.scalar_subquery()),
            ],
            owner,
            now=now,
            lease=lease,
            limit=limit,
        )

    def _claim(
        self,
        where: builtins.list[sa.ColumnElement[bool]],
        owner: str,
        *,
        now: datetime,
        lease: timedelta,
        limit: int,
    ) -> builtins.list[ClaimedDelivery]:
        d = webhook_deliveries.c
        due = sa.select(d.id).where(*where).order_by(d.next_attempt_at, d.id).limit(limit)
        if not self._db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        claim = (
            sa.update(webhook_deliveries)
            .where(d.id.in_(due.scalar_subquery()))
            .values(attempts=d.attempts + 1, next_attempt_at=now + lease, lease_owner=owner)
            .returning(d.id, d.event_id, d.attempts, d.max_attempts)
        )
        with self._db.write() as conn:
            claimed = {row.id: row for row in conn.execute(claim).all()}
            if not claimed:
                return []
            rows = conn.execute(
                sa.select(
                    d.id.label("delivery_id"),
                    d.payload.label("event_payload"),
                    webhook_endpoints,
                )
                .select_from(
                    webhook_deliveries.join(
                        webhook_endpoints, webhook_endpoints.c.id == d.endpoint_id
                    )
                )
                .where(d.id.in_(list(claimed)))
                .order_by(d.id)
            ).all()
        found = []
        for row in rows:
            mine = claimed[row.delivery_id]
            endpoint = endpoint_record(row)
            found.append(
                ClaimedDelivery(
                    id=mine.id,
                    endpoint_id=endpoint.id,
                    event_id=mine.event_id,
                    payload=row.event_payload,
                    attempts=mine.attempts,
                    max_attempts=mine.max_attempts,
                    lease_owner=owner,
                    endpoint=endpoint,
                )
            )
        return found

    def finish(self, outcomes: Sequence[Outcome]) -> int:
        """Record each attempt and its outcome in one transaction: succeeded, due again at
        ``next_attempt_at``, or dead (failed with no next attempt); and keep each
        endpoint's ``failing_since``. A delivery whose lease was lost (another worker took
        it over) keeps the new owner's state; its attempt is still recorded. Returns how
        many outcomes were applied."""
        if not outcomes:
            return 0
        e = webhook_endpoints.c
        with self._db.write() as conn:
            conn.execute(
                sa.insert(webhook_attempts),
                [
                    {
                        "delivery_id": o.delivery.id,
                        "attempted_at": o.attempt.attempted_at,
                        "status_code": o.attempt.status_code,
                        "latency_ms": o.attempt.latency_ms,
                        "error": o.attempt.error,
                    }
                    for o in outcomes
                ],
            )
            finished = [
                {
                    "target": o.delivery.id,
                    "owner": o.delivery.lease_owner,
                    "status": SUCCEEDED
                    if o.succeeded
                    else (PENDING if o.next_attempt_at is not None else DEAD),
                    "next_at": None if o.succeeded else o.next_attempt_at,
                    "code": o.attempt.status_code,
                    "error": o.attempt.error,
                    "at": o.attempt.attempted_at,
                }
                for o in outcomes
            ]
            # one statement, executed for every outcome (psycopg pipelines them)
            result = conn.execute(_FINISH, finished)
            applied = max(0, int(result.rowcount))
            failing: dict[str, datetime | None] = {}
            for o in outcomes:  # the last outcome per endpoint decides
                failing[o.delivery.endpoint_id] = None if o.succeeded else o.attempt.attempted_at
            known = {o.delivery.endpoint_id: o.delivery.endpoint.failing_since for o in outcomes}
            for endpoint_id, since in failing.items():
                if since is None and known[endpoint_id] is not None:
                    conn.execute(
                        sa.update(webhook_endpoints)
                        .where(e.id == endpoint_id, e.failing_since.is_not(None))
                        .values(failing_since=None)
                    )
                elif since is not None and known[endpoint_id] is None:
                    conn.execute(
                        sa.update(webhook_endpoints)
                        .where(e.id == endpoint_id, e.failing_since.is_(None))
                        .values(failing_since=since)
                    )
        return applied

    def retry(self, endpoint_id: str, delivery_id: int, now: datetime) -> DeliveryRecord:
        """Make a delivery of ``endpoint_id`` due now with a fresh run of attempts
        (``NotFound`` for another endpoint's or an unknown delivery)."""
        with self._db.write() as conn:
            updated = conn.execute(
                sa.update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.id == delivery_id,
                    webhook_deliveries.c.endpoint_id == endpoint_id,
                )
                .values(status=PENDING, attempts=0, next_attempt_at=now, lease_owner=None)
            ).rowcount
        if not updated:
            raise NotFound("Delivery not found.")
        found = self.get_delivery(endpoint_id, delivery_id)
        assert found is not None
        return found

    def get_delivery(self, endpoint_id: str, delivery_id: int) -> DeliveryRecord | None:
        found = self.list_deliveries(endpoint_id, only=delivery_id, limit=1)
        return found[0] if found else None

    def list_deliveries(
        self,
        endpoint_id: str,
        *,
        before: int | None = None,
        only: int | None = None,
        limit: int = 50,
    ) -> builtins.list[DeliveryRecord]:
        """Deliveries of ``endpoint_id``, newest first, with their attempts; ``before``: the
        page after the delivery with that id (the cursor)."""
        where = [webhook_deliveries.c.endpoint_id == endpoint_id]
        if before is not None:
            where.append(webhook_deliveries.c.id < before)
        if only is not None:
            where.append(webhook_deliveries.c.id == only)
        query = (
            sa.select(*_DELIVERY_COLUMNS)
            .select_from(webhook_deliveries)
            .where(*where)
            .order_by(webhook_deliveries.c.id.desc())
            .limit(limit)
        )
        with self._db.read() as conn:
            rows = conn.execute(query).all()
            ids = [row.id for row in rows]
            history: dict[int, builtins.list[AttemptRecord]] = {}
            if ids:
                attempts = conn.execute(
                    sa.select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id.in_(ids))
                    .order_by(webhook_attempts.c.id)
                ).all()
                for a in attempts:
                    history.setdefault(a.delivery_id, []).append(
                        AttemptRecord(a.attempted_at, a.status_code, a.latency_ms, a.error)
                    )
        return [
            DeliveryRecord(
                id=row.id,
                endpoint_id=row.endpoint_id,
                event_id=row.event_id,
                event_type=row.event_type,
                status=row.status,
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                next_attempt_at=row.next_attempt_at,
                last_status_code=row.last_status_code,
                last_error=row.last_error,
                last_attempt_at=row.last_attempt_at,
                created_at=row.created_at,
                history=tuple(history.get(row.id, ())),
            )
            for row in rows
        ]

    def failing_endpoints(self, since: datetime) -> builtins.list[WebhookEndpointRecord]:
        """Enabled endpoints failing without a success since before ``since``."""
        query = sa.select(webhook_endpoints).where(
            webhook_endpoints.c.enabled.is_(True),
            webhook_endpoints.c.failing_since.is_not(None),
            webhook_endpoints.c.failing_since <= since,
        )
        with self._db.read() as conn:
            return [endpoint_record(row) for row in conn.execute(query).all()]

    def prune(self, older_than: datetime) -> int:
        """Delete finished deliveries (succeeded or dead) created before ``older_than``,
        with their attempts: payloads hold personal data (a license's e-mail). Returns
        how many were deleted."""
        d = webhook_deliveries.c
        with self._db.write() as conn:
            old = sa.select(d.id).where(d.status.in_((SUCCEEDED, DEAD)), d.created_at < older_than)
            conn.execute(sa.delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(old)))
            return int(conn.execute(sa.delete(webhook_deliveries).where(d.id.in_(old))).rowcount)

    # -- license expiries ----------------------------------------------------------------

    def unannounced_expiries(
        self, now: datetime, limit: int
    ) -> builtins.list[tuple[str, datetime]]:
        """(license id, expiry) of active licenses past their expiry and not yet announced."""
        lic = metadata.tables["lc_licenses"]
        seen = license_expirations
        query = (
            sa.select(lic.c.id, lic.c.expires_at)
            .select_from(lic.outerjoin(seen, seen.c.license_id == lic.c.id))
            .where(
                lic.c.status == "ACTIVE",
                lic.c.expires_at.is_not(None),
                lic.c.expires_at <= now,
                sa.or_(seen.c.license_id.is_(None), seen.c.expires_at != lic.c.expires_at),
            )
            .order_by(lic.c.expires_at)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [(row.id, row.expires_at) for row in conn.execute(query).all()]

    def mark_expiry(
        self, conn: sa.Connection, license_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Remember that ``license_id`` expired at ``expires_at``; False when it already was
        (another worker announced it first)."""
        values = {"license_id": license_id, "expires_at": expires_at, "recorded_at": now}
        insert = (
            sqlite.insert(license_expirations).values(**values)
            if self._db.is_sqlite
            else postgresql.insert(license_expirations).values(**values)
        )
        statement = insert.on_conflict_do_update(
            index_elements=[license_expirations.c.license_id],
            set_={"expires_at": insert.excluded.expires_at, "recorded_at": now},
            where=license_expirations.c.expires_at != insert.excluded.expires_at,
        )
        return bool(conn.execute(statement).rowcount)
