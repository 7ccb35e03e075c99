"""``/v1/webhooks``: Standard Webhooks endpoints, their deliveries, tests and secrets.

The paths and bodies are those LicenseChain's SDKs send (``POST /webhooks {url, events,
secret}``, ``PUT /webhooks/<id>``, a list read from ``data``). Scopes: ``webhooks:write``,
and ``webhooks:read`` for the ``GET``s. An app-limited API key sees and makes only its
app's endpoints (others answer 404, as missing ones). The signing secret is in the answer
of ``POST /webhooks`` and ``POST /webhooks/<id>/rotate-secret`` only.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from flask import Response, request

from .. import field_limits as limits
from ..core.errors import InvalidRequest, NotFound
from ..serialize import iso
from ..services import webhooks as service
from ..state import get_issuer_state
from ..store.webhooks import WebhookEndpointRecord
from ..webhooks.runtime import WebhookRuntime
from ..webhooks.serialize import delivery_json, endpoint_json
from .auth import app_filter, check_app_visible, key_scope, request_actor, requires
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response
from .query import query_app_id, query_int

#: a webhook's description
DESCRIPTION: Final = 500
#: event types one endpoint lists
MAX_EVENTS: Final = 64
_CREATE_FIELDS: Final = {"url", "events", "secret", "app_id", "appId", "description"}
_UPDATE_FIELDS: Final = {"url", "events", "secret", "description", "enabled", "active"}
_ID_MAX: Final = 40
_DELIVERY_ID_MAX: Final = 2**63 - 1


def _runtime() -> WebhookRuntime:
    runtime = get_issuer_state().webhooks
    assert runtime is not None, "init_issuer sets up the webhooks"
    return runtime


def _visible(runtime: WebhookRuntime, webhook_id: str) -> WebhookEndpointRecord:
    """The endpoint when it exists and the key may see it, else ``NotFound``."""
    endpoint = runtime.repository.get_endpoint(webhook_id) if len(webhook_id) <= _ID_MAX else None
    if endpoint is None:
        raise NotFound("Webhook not found.")
    try:
        if endpoint.app_id is None:
            if not key_scope().unassigned:  # only a key of every live app sees these
                raise NotFound("Webhook not found.")
        else:
            check_app_visible(endpoint.app_id)
    except NotFound:
        raise NotFound("Webhook not found.") from None
    return endpoint


def _endpoint_app(requested: str | None) -> str | None:
    """The app of a new endpoint: ``requested`` when the key may see it (else 404); none
    given: every app for a key of every live app, the key's app when it has exactly one,
    else 400."""
    if requested is not None:
        check_app_visible(requested)
        return requested
    scope = key_scope()
    if scope.unassigned:
        return None
    if scope.app_ids is not None and len(scope.app_ids) == 1:
        return next(iter(scope.app_ids))
    raise InvalidRequest("'app_id' is required: this API key does not see every live app.")


def _events(fields: Fields) -> list[str] | None:
    return fields.string_list("events", max_items=MAX_EVENTS, max_length=64)


@bp.post("/webhooks")
@requires("webhooks:write")
def create_webhook() -> Response:
    """A new endpoint (201) with its signing secret, shown this once."""
    runtime = _runtime()
    fields = Fields(read_json_body(get_issuer_state().settings.max_body_bytes))
    reject_unknown(fields, _CREATE_FIELDS)
    url = fields.required_string("url", max_length=limits.WEBHOOK_URL)
    events = _events(fields)
    secret = fields.string("secret", max_length=200)
    description = fields.string("description", max_length=DESCRIPTION)
    app_id = _endpoint_app(fields.string("app_id", "appId", max_length=limits.APP_ID))
    created = service.create_endpoint(
        runtime,
        request_actor(),
        url=url,
        events=events,
        app_id=app_id,
        description=description,
        secret=secret,
    )
    body = {**endpoint_json(created.endpoint), "secret": created.secret}
    return json_response(body, 201, NO_STORE)


@bp.get("/webhooks")
@requires("webhooks:read")
def list_webhooks() -> Response:
    """One page of endpoints (``page``, ``limit``, ``app_id``), in ``data``."""
    runtime = _runtime()
    number = query_int("page", 1, limits.PAGE)
    size = query_int("limit", limits.DEFAULT_PAGE_SIZE, limits.PAGE_SIZE)
    scope = app_filter(query_app_id())
    found, total = runtime.repository.list_endpoints(scope=scope, page=number, limit=size)
    return json_response(
        {
            "data": [endpoint_json(endpoint) for endpoint in found],
            "total": total,
            "page": number,
            "limit": size,
            "pagination": {"total": total, "page": number, "limit": size},
        }
    )


@bp.get("/webhooks/<webhook_id>")
@requires("webhooks:read")
def get_webhook(webhook_id: str) -> Response:
    """One endpoint (never its secret)."""
    return json_response(endpoint_json(_visible(_runtime(), webhook_id)))


@bp.route("/webhooks/<webhook_id>", methods=["PATCH", "PUT"])
@requires("webhooks:write")
def update_webhook(webhook_id: str) -> Response:
    """Change ``url``, ``events``, ``description``, ``enabled`` (alias ``active``) or
    ``secret``; ``PUT`` is the same partial update (LicenseChain's SDKs send it)."""
    runtime = _runtime()
    fields = Fields(read_json_body(get_issuer_state().settings.max_body_bytes))
    reject_unknown(fields, _UPDATE_FIELDS)
    changes: dict[str, Any] = {}
    if fields.present("url"):
        changes["url"] = fields.required_string("url", max_length=limits.WEBHOOK_URL)
    if fields.present("events"):
        changes["events"] = _events(fields)
    if fields.present("description"):
        changes["description"] = fields.string(
            "description", max_length=DESCRIPTION, allow_empty=True
        )
    enabled = fields.boolean("enabled", "active")
    if enabled is not None:
        changes["enabled"] = enabled
    secret = fields.string("secret", max_length=200)
    if secret is not None:
        changes["secret"] = secret
    endpoint = _visible(runtime, webhook_id)
    updated = service.update_endpoint(runtime, request_actor(), endpoint, changes=changes)
    return json_response(endpoint_json(updated))


@bp.delete("/webhooks/<webhook_id>")
@requires("webhooks:write")
def delete_webhook(webhook_id: str) -> Response:
    """Delete an endpoint and its deliveries."""
    runtime = _runtime()
    reject_unknown(Fields(read_json_body(get_issuer_state().settings.max_body_bytes)), set())
    endpoint = _visible(runtime, webhook_id)
    service.delete_endpoint(runtime, request_actor(), endpoint)
    return json_response({"id": endpoint.id, "deleted": True})


@bp.post("/webhooks/<webhook_id>/test")
@requires("webhooks:write")
def test_webhook(webhook_id: str) -> Response:
    """Send a ``webhook.test`` event now and answer with the delivery and its outcome."""
    runtime = _runtime()
    reject_unknown(Fields(read_json_body(get_issuer_state().settings.max_body_bytes)), set())
    endpoint = _visible(runtime, webhook_id)
    delivery, result = service.send_test(runtime, endpoint)
    return json_response(
        {
            "success": result.ok,
            "statusCode": result.status_code,
            "latencyMs": result.latency_ms,
            "error": result.error,
            "delivery": delivery_json(delivery),
        }
    )


def _cursor() -> int | None:
    raw = request.args.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        text = base64.urlsafe_b64decode(raw.encode("ascii") + b"==").decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        raise InvalidRequest("'cursor' is not a cursor this API gave.") from None
    if not text.isdigit() or len(text) > 19 or int(text) > _DELIVERY_ID_MAX:
        raise InvalidRequest("'cursor' is not a cursor this API gave.")
    return int(text)


def _next_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


@bp.get("/webhooks/<webhook_id>/deliveries")
@requires("webhooks:read")
def list_deliveries(webhook_id: str) -> Response:
    """Deliveries, newest first, each with its attempts (status code, latency, error).
    ``limit`` (default 50) per page; ``nextCursor`` (null on the last page) goes back as
    ``cursor`` for the next one."""
    runtime = _runtime()
    size = query_int("limit", limits.DEFAULT_PAGE_SIZE, limits.PAGE_SIZE)
    before = _cursor()
    endpoint = _visible(runtime, webhook_id)
    found = runtime.repository.list_deliveries(endpoint.id, before=before, limit=size + 1)
    page, more = found[:size], len(found) > size
    next_cursor = _next_cursor(page[-1].id) if more and page else None
    return json_response(
        {"data": [delivery_json(d) for d in page], "nextCursor": next_cursor, "limit": size}
    )


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/retry")
@requires("webhooks:write")
def retry_delivery(webhook_id: str, delivery_id: str) -> Response:
    """Queue a delivery again now, with a fresh run of attempts (a dead one included)."""
    runtime = _runtime()
    reject_unknown(Fields(read_json_body(get_issuer_state().settings.max_body_bytes)), set())
    endpoint = _visible(runtime, webhook_id)
    if not delivery_id.isascii() or not delivery_id.isdigit() or len(delivery_id) > 19:
        raise NotFound("Delivery not found.")
    number = int(delivery_id)
    if number > _DELIVERY_ID_MAX:
        raise NotFound("Delivery not found.")
    delivery = service.retry_delivery(runtime, endpoint, number)
    return json_response(delivery_json(delivery), 202)


@bp.post("/webhooks/<webhook_id>/rotate-secret")
@requires("webhooks:write")
def rotate_webhook_secret(webhook_id: str) -> Response:
    """A new signing secret, shown once; the previous one keeps signing beside it until
    ``previousSecretExpiresAt``."""
    runtime = _runtime()
    reject_unknown(Fields(read_json_body(get_issuer_state().settings.max_body_bytes)), set())
    endpoint = _visible(runtime, webhook_id)
    rotated = service.rotate_secret(runtime, request_actor(), endpoint)
    body = {
        **endpoint_json(rotated.endpoint),
        "secret": rotated.secret,
        "previousSecretExpiresAt": iso(rotated.endpoint.previous_secret_expires_at),
    }
    return json_response(body, 200, NO_STORE)
