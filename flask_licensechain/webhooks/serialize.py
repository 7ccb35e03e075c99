"""Webhook endpoints and deliveries as the /v1 API returns them (and as the
``webhook.endpoint_disabled`` event carries them). Never the secret.

The members LicenseChain's SDKs read are there under the names they read: ``data`` in
lists, ``app_id``, ``active``, ``created_at``/``updated_at`` beside the project's camelCase.
"""

from __future__ import annotations

from typing import Any

from ..serialize import iso
from ..store.webhooks import AttemptRecord, DeliveryRecord, WebhookEndpointRecord


def endpoint_json(endpoint: WebhookEndpointRecord) -> dict[str, Any]:
    """``{id, url, description, events, appId, app_id, source, active, enabled,
    disabledAt, disabledReason, failingSince, createdAt, created_at, updatedAt,
    updated_at}``."""
    created, updated = iso(endpoint.created_at), iso(endpoint.updated_at)
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events),
        "appId": endpoint.app_id,
        "app_id": endpoint.app_id,
        "source": endpoint.source,
        "active": endpoint.enabled,
        "enabled": endpoint.enabled,
        "disabledAt": iso(endpoint.disabled_at),
        "disabledReason": endpoint.disabled_reason,
        "failingSince": iso(endpoint.failing_since),
        "createdAt": created,
        "created_at": created,
        "updatedAt": updated,
        "updated_at": updated,
    }


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    """``{attemptedAt, statusCode, latencyMs, error}``."""
    return {
        "attemptedAt": iso(attempt.attempted_at),
        "statusCode": attempt.status_code,
        "latencyMs": attempt.latency_ms,
        "error": attempt.error,
    }


def delivery_json(delivery: DeliveryRecord) -> dict[str, Any]:
    """A delivery of one event to one endpoint, with every attempt (oldest first)."""
    return {
        "id": str(delivery.id),
        "webhookId": delivery.endpoint_id,
        "eventId": delivery.event_id,
        "eventType": delivery.event_type,
        "status": delivery.status,
        "attemptCount": delivery.attempts,
        "maxAttempts": delivery.max_attempts,
        "nextAttemptAt": iso(delivery.next_attempt_at),
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "lastAttemptAt": iso(delivery.last_attempt_at),
        "createdAt": iso(delivery.created_at),
        "attempts": [attempt_json(a) for a in delivery.history],
    }
