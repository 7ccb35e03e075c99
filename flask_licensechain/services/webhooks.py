"""Webhook endpoints: create, update, delete, rotate the secret, disable a failing one,
send a test event, retry a delivery; and the sweeper that announces license expiries.

Each change runs in ``store.unit_of_work(actor)`` and records its ``Change``
(``webhook.create``, ``webhook.update``, ``webhook.delete``, ``webhook.rotate_secret``,
``webhook.disable``, ``license.expire``): the audit log and the outbox see it in the same
transaction. A secret never goes into a ``Change``: the endpoint record carries only its
sealed form, which no serializer shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ..core.errors import Conflict, InvalidRequest, NotFound
from ..store import Actor, Change
from ..store.changes import SYSTEM
from ..store.webhooks import (
    ALL_EVENTS,
    SOURCE_API,
    SOURCE_APP,
    DeliveryRecord,
    Outcome,
    WebhookEndpointRecord,
    webhook_endpoints,
)
from ..webhooks import secret as secret_box
from ..webhooks.delivery import AttemptResult, signature_headers
from ..webhooks.events import SUBSCRIBABLE, TEST_EVENT
from ..webhooks.outbox import new_event_id, payload_json

if TYPE_CHECKING:
    from ..webhooks.runtime import WebhookRuntime

#: the most endpoints one store keeps (each is read on every change)
MAX_ENDPOINTS: Final = 500
#: licenses the sweeper announces per pass
SWEEP_BATCH: Final = 500


@dataclass(frozen=True)
class CreatedEndpoint:
    """A new endpoint and its secret, shown once (``whsec_...``)."""

    endpoint: WebhookEndpointRecord
    secret: str


def check_events(events: Sequence[str] | None) -> tuple[str, ...]:
    """The subscribed event types: known ones or ``*`` (all); ``None`` or ``[]`` is
    ``("*",)``. ``InvalidRequest`` names the unknown ones."""
    if not events:
        return (ALL_EVENTS,)
    unknown = [e for e in events if e != ALL_EVENTS and e not in SUBSCRIBABLE]
    if unknown:
        shown = ", ".join(repr(e[:64]) for e in unknown[:5])
        raise InvalidRequest(
            f"Unknown event type(s): {shown}. Known: {', '.join(SUBSCRIBABLE)}, or '*'."
        )
    return (ALL_EVENTS,) if ALL_EVENTS in events else tuple(events)


def create_endpoint(
    runtime: WebhookRuntime,
    actor: Actor,
    *,
    url: str,
    events: Sequence[str] | None,
    app_id: str | None,
    description: str | None = None,
    secret: str | None = None,
) -> CreatedEndpoint:
    """A new endpoint, its destination checked (``InvalidRequest`` when refused, see
    ``webhooks/ssrf.py``), with the given ``whsec_`` secret or a new one.
    ``NotFound`` for an unknown app; ``Conflict`` past ``MAX_ENDPOINTS``."""
    store = runtime.store
    checked_url = runtime.policy.check_url(url)
    subscribed = check_events(events)
    raw = secret_box.parse(secret) if secret is not None else secret_box.new_secret()
    endpoint_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with store.unit_of_work(actor) as unit:
        if app_id is not None and store.apps.get(app_id) is None:
            raise NotFound("App not found.")
        if runtime.repository.list_endpoints(limit=1)[1] >= MAX_ENDPOINTS:
            raise Conflict(f"At most {MAX_ENDPOINTS} webhooks can be registered.")
        endpoint = runtime.repository.insert_endpoint(
            {
                "id": endpoint_id,
                "app_id": app_id,
                "url": checked_url,
                "description": description,
                "events": list(subscribed),
                "source": SOURCE_API,
                "enabled": True,
                "sealed_secret": runtime.seal(raw, endpoint_id),
                "created_at": now,
                "updated_at": now,
            }
        )
        unit.record(
            Change(
                action="webhook.create",
                target=endpoint.id,
                app_id=app_id,
                data={"url": endpoint.url, "events": list(endpoint.events)},
                subject=endpoint,
            )
        )
    return CreatedEndpoint(endpoint, secret_box.show(raw))


def update_endpoint(
    runtime: WebhookRuntime,
    actor: Actor,
    endpoint: WebhookEndpointRecord,
    *,
    changes: dict[str, Any],
) -> WebhookEndpointRecord:
    """Change ``url``, ``events``, ``description``, ``enabled`` or ``secret`` (a
    ``whsec_`` secret replacing the current one at once, no overlap). An app endpoint
    follows its app's ``webhook_url``: only ``enabled`` changes there (``Conflict``)."""
    if endpoint.source == SOURCE_APP and set(changes) - {"enabled"}:
        raise Conflict("This webhook is the app's webhook_url: change the app instead.")
    now = datetime.now(UTC)
    values: dict[str, Any] = {}
    if "url" in changes:
        values["url"] = runtime.policy.check_url(changes["url"])
    if "events" in changes:
        values["events"] = list(check_events(changes["events"]))
    if "description" in changes:
        values["description"] = changes["description"]
    if "secret" in changes:
        raw = secret_box.parse(changes["secret"])
        values["sealed_secret"] = runtime.seal(raw, endpoint.id)
        values["sealed_previous_secret"] = None
        values["previous_secret_expires_at"] = None
    if "enabled" in changes:
        values["enabled"] = bool(changes["enabled"])
        if values["enabled"]:
            values.update(disabled_at=None, disabled_reason=None, failing_since=None)
        elif endpoint.enabled:
            values.update(disabled_at=now, disabled_reason="disabled through the API")
    if not values:
        return endpoint
    values["updated_at"] = now
    with runtime.store.unit_of_work(actor) as unit:
        updated = runtime.repository.update_endpoint(endpoint.id, values)
        if updated is None:
            raise NotFound("Webhook not found.")
        data = {k: v for k, v in values.items() if k in ("url", "events", "enabled")}
        if "sealed_secret" in values:
            data["secret"] = "replaced"  # noqa: S105 (a fact, not a secret)
        unit.record(
            Change(
                action="webhook.update",
                target=endpoint.id,
                app_id=endpoint.app_id,
                data={"changes": data},
                subject=updated,
            )
        )
    return updated


def delete_endpoint(runtime: WebhookRuntime, actor: Actor, endpoint: WebhookEndpointRecord) -> None:
    """Delete an endpoint with its deliveries (``Conflict`` for an app's endpoint)."""
    if endpoint.source == SOURCE_APP:
        raise Conflict("This webhook is the app's webhook_url: clear it on the app instead.")
    with runtime.store.unit_of_work(actor) as unit:
        runtime.repository.delete_endpoint(endpoint.id)
        unit.record(
            Change(
                action="webhook.delete",
                target=endpoint.id,
                app_id=endpoint.app_id,
                data={"url": endpoint.url},
                subject=endpoint,
            )
        )


def rotate_secret(
    runtime: WebhookRuntime, actor: Actor, endpoint: WebhookEndpointRecord
) -> CreatedEndpoint:
    """A new secret, shown once. The previous one keeps signing (a second signature in
    ``webhook-signature``) for ``LICENSECHAIN_WEBHOOKS_SECRET_OVERLAP`` seconds, so the
    receiver can switch without losing a message."""
    now = datetime.now(UTC)
    raw = secret_box.new_secret()
    overlap = timedelta(seconds=runtime.settings.secret_overlap)
    values: dict[str, Any] = {
        "sealed_secret": runtime.seal(raw, endpoint.id),
        "sealed_previous_secret": endpoint.sealed_secret,
        "previous_secret_expires_at": now + overlap if endpoint.sealed_secret else None,
        "updated_at": now,
    }
    with runtime.store.unit_of_work(actor) as unit:
        # Only from the secret this caller saw: two rotations at once must not drop one.
        current = webhook_endpoints.c.sealed_secret
        guard = (
            current.is_(None)
            if endpoint.sealed_secret is None
            else current == endpoint.sealed_secret
        )
        updated = runtime.repository.update_endpoint(endpoint.id, values, only_if=guard)
        if updated is None:
            raise Conflict("The secret changed meanwhile: try again.")
        unit.record(
            Change(
                action="webhook.rotate_secret",
                target=endpoint.id,
                app_id=endpoint.app_id,
                data={"overlapSeconds": int(overlap.total_seconds())},
                subject=updated,
            )
        )
    return CreatedEndpoint(updated, secret_box.show(raw))


def disable_failing(
    runtime: WebhookRuntime, endpoint: WebhookEndpointRecord, *, reason: str
) -> WebhookEndpointRecord | None:
    """Disable an endpoint that has failed for too long, as ``SYSTEM``: the audit log
    records ``webhook.disable`` and the app's other endpoints get
    ``webhook.endpoint_disabled``. ``None`` when it was already disabled or is gone."""
    now = datetime.now(UTC)
    with runtime.store.unit_of_work(SYSTEM) as unit:
        updated = runtime.repository.update_endpoint(
            endpoint.id,
            {"enabled": False, "disabled_at": now, "disabled_reason": reason, "updated_at": now},
            only_if=webhook_endpoints.c.enabled.is_(True),
        )
        if updated is None:
            return None
        unit.record(
            Change(
                action="webhook.disable",
                target=endpoint.id,
                app_id=endpoint.app_id,
                data={"reason": reason},
                subject=updated,
            )
        )
    return updated


def send_test(
    runtime: WebhookRuntime, endpoint: WebhookEndpointRecord
) -> tuple[DeliveryRecord, AttemptResult]:
    """Queue a ``webhook.test`` event for ``endpoint`` and attempt it now, in this
    request: one attempt (a failed test is dead at once, and can be retried by hand)."""
    now = datetime.now(UTC)
    event_id = new_event_id()
    data = {"webhookId": endpoint.id, "message": "A test event from flask-licensechain."}
    payload = payload_json(TEST_EVENT, data, now)
    with runtime.store.database.write() as conn:
        runtime.repository.add_event(
            conn,
            event_id=event_id,
            event_type=TEST_EVENT,
            app_id=endpoint.app_id,
            payload=payload,
            now=now,
            max_attempts=1,
            only=endpoint.id,
        )
    claimed = runtime.repository.claim_one(
        endpoint.id, event_id, owner=new_event_id(), now=now, lease=runtime.settings.lease()
    )
    assert claimed is not None
    result = attempt_delivery(runtime, claimed.endpoint, claimed.event_id, claimed.payload)
    runtime.repository.finish([Outcome(claimed, result.as_record(now), None)])
    delivery = runtime.repository.get_delivery(endpoint.id, claimed.id)
    assert delivery is not None
    return delivery, result


def attempt_delivery(
    runtime: WebhookRuntime, endpoint: WebhookEndpointRecord, event_id: str, payload: str
) -> AttemptResult:
    """One signed POST of ``payload`` to ``endpoint`` (the result, never an exception)."""
    now = datetime.now(UTC)
    signing = runtime.signing_secrets(endpoint, now)
    headers = signature_headers(event_id, payload, signing, now)
    return runtime.sender.post(endpoint.url, payload.encode(), headers)


def retry_delivery(
    runtime: WebhookRuntime, endpoint: WebhookEndpointRecord, delivery_id: int
) -> DeliveryRecord:
    """Make a delivery (dead, failed or even succeeded) due now, with a fresh run of
    attempts. ``NotFound`` for a delivery of another endpoint."""
    return runtime.repository.retry(endpoint.id, delivery_id, datetime.now(UTC))


def announce_expirations(runtime: WebhookRuntime, now: datetime | None = None) -> int:
    """Record ``license.expire`` (actor ``SYSTEM``) once for each active license whose
    ``expiresAt`` has passed: once per license and expiry, however many workers sweep.
    Returns how many were announced."""
    now = now or datetime.now(UTC)
    store = runtime.store
    announced = 0
    for license_id, expires_at in runtime.repository.unannounced_expiries(now, SWEEP_BATCH):
        with store.unit_of_work(SYSTEM) as unit:
            if not runtime.repository.mark_expiry(unit.conn, license_id, expires_at, now):
                continue
            lic = store.licenses.get(license_id)
            if lic is None:
                continue
            unit.record(
                Change(
                    action="license.expire",
                    target=lic.id,
                    app_id=lic.app_id,
                    data={"expiresAt": expires_at.isoformat()},
                    subject=lic,
                )
            )
            announced += 1
    return announced


__all__ = [
    "CreatedEndpoint",
    "announce_expirations",
    "attempt_delivery",
    "check_events",
    "create_endpoint",
    "delete_endpoint",
    "disable_failing",
    "retry_delivery",
    "rotate_secret",
    "send_test",
    "update_endpoint",
]
