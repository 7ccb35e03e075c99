"""The durable outbox: a change listener that queues webhook events in the change's own
transaction.

``Outbox.listener`` is added to the store's change listeners (after the audit log). For
every change (``store/changes.py``) whose action has an event type (``events.py``), it
writes one event row (the exact JSON payload that will be signed) and one delivery row per
enabled endpoint that subscribes to it: the endpoints of the change's app, and those of no
app (every app). It runs inside the unit of work, so the event commits with the change or
not at all: a rolled-back change sends nothing, and a crash after the commit loses nothing
(the worker finds the rows). ``app.create`` and ``app.update`` also keep the endpoint of
the app's ``webhook_url`` in step (revision ``0006`` made those of the apps before it).

Payload: ``{"type": <event type>, "timestamp": <ISO 8601 UTC>, "data": <the changed object
as the API returns it>}`` (``serialize.py``; a webhook endpoint without its secret).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa

from ..serialize import api_key_json, app_json, iso, license_json
from ..store import Actor, ApiKeyRecord, AppRecord, Change, LicenseRecord, SigningKeyRecord
from ..store.webhooks import WebhookEndpointRecord, WebhookRepository
from .events import EVENT_TYPES
from .serialize import endpoint_json

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
#: the actions that can change an app's ``webhook_url``
_APP_ACTIONS: Final = frozenset({"app.create", "app.update"})


def new_event_id() -> str:
    """``msg_`` and 144 random bits, URL-safe: the ``webhook-id`` of an event."""
    return "msg_" + secrets.token_urlsafe(18)


def payload_json(event_type: str, data: Mapping[str, Any], at: datetime) -> str:
    """The payload text ``{"type", "timestamp", "data"}`` (compact JSON)."""
    return _encode({"type": event_type, "timestamp": iso(at), "data": dict(data)})


def subject_json(change: Change, now: datetime) -> dict[str, Any]:
    """The changed object as the API returns it; without a known record, its id, app and
    the change's non-personal facts."""
    subject = change.subject
    if isinstance(subject, LicenseRecord):
        return license_json(subject, now)
    if isinstance(subject, AppRecord):
        return app_json(subject)
    if isinstance(subject, ApiKeyRecord):
        return api_key_json(subject)
    if isinstance(subject, WebhookEndpointRecord):
        return endpoint_json(subject)
    if isinstance(subject, SigningKeyRecord):
        return {
            "kid": subject.kid,
            "state": subject.state,
            "createdAt": iso(subject.created_at),
            "retiredAt": iso(subject.retired_at),
            "expiresAt": iso(subject.expires_at),
        }
    if isinstance(subject, Mapping):
        return dict(subject)
    return {"id": change.target, "appId": change.app_id, **dict(change.data)}


class Outbox:
    """The listener, over the webhook repository. ``max_attempts``: attempts a delivery
    gets (``LICENSECHAIN_WEBHOOKS_RETRY_SCHEDULE`` plus the first)."""

    def __init__(self, repository: WebhookRepository, *, max_attempts: int) -> None:
        self._repository = repository
        self._max_attempts = max_attempts

    def listener(self, conn: sa.Connection, actor: Actor, change: Change) -> None:
        """Queue ``change``'s event, if it has one, in ``conn``'s transaction."""
        event_type = EVENT_TYPES.get(change.action)
        if event_type is None and change.action not in _APP_ACTIONS:
            return
        now = datetime.now(UTC)
        if event_type is None:  # an app was created or changed: its webhook_url may have
            app_id = change.app_id or change.target
            if app_id is not None:
                self._repository.sync_app_endpoint(conn, app_id, now)
            return
        self._repository.add_event(
            conn,
            event_id=new_event_id(),
            event_type=event_type,
            app_id=change.app_id,
            payload=payload_json(event_type, subject_json(change, now), now),
            now=now,
            max_attempts=self._max_attempts,
            # the endpoint a webhook.disable is about hears nothing of it
            exclude=change.target if change.action == "webhook.disable" else None,
        )
