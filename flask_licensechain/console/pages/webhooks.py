"""Webhooks: the endpoints (of the apps the user may see), create (the signing secret shown
once, in that one answer), enable or disable, delete, rotate the secret (a recent second
factor), send a test event; and an endpoint's deliveries (status code, latency, error,
attempts) with retry.

Every action goes through ``services.webhooks``, as the API's do. An endpoint for every app
(no ``app_id``) is only for a user of every app; an app-limited user sees its apps'
endpoints only, and any other one is 404, as for an app-limited API key.
"""

from __future__ import annotations

from typing import Any, Final

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ...services import webhooks as service
from ...services.webhooks import MAX_ENDPOINTS, CreatedEndpoint
from ...state import get_issuer_state
from ...store.webhooks import SOURCE_APP, DeliveryRecord, WebhookEndpointRecord
from ...webhooks.events import SUBSCRIBABLE
from ...webhooks.runtime import WebhookRuntime
from ..auth import requires_recent_mfa, requires_scope
from ..blueprint import bp
from .apps import visible_apps
from .common import check_app, console_actor, service_call, visible_app_ids
from .forms import WebhookForm, split_list

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Webhooks", "console.webhooks", "webhooks:read")
#: deliveries per page
DELIVERIES_PAGE: Final = 50
#: the longest endpoint id looked up (ids are UUIDs)
_ID_MAX: Final = 40
#: the largest delivery id (a signed 64-bit integer)
_DELIVERY_ID_MAX: Final = 2**63 - 1


def _runtime() -> WebhookRuntime:
    runtime = get_issuer_state().webhooks
    assert runtime is not None, "init_issuer sets up the webhooks"
    return runtime


def visible_endpoints() -> list[WebhookEndpointRecord]:
    """The endpoints the user may see, oldest first: all of them, or its apps' ones."""
    repository = _runtime().repository
    allowed = visible_app_ids()
    if allowed is None:
        return repository.list_endpoints(limit=MAX_ENDPOINTS)[0]
    found = [
        endpoint
        for app_id in allowed
        for endpoint in repository.list_endpoints(app_id=app_id, limit=MAX_ENDPOINTS)[0]
    ]
    return sorted(found, key=lambda endpoint: (endpoint.created_at, endpoint.id))


def visible_endpoint(endpoint_id: str) -> WebhookEndpointRecord:
    """The endpoint if it exists and the user may see it, else 404."""
    if len(endpoint_id) > _ID_MAX:
        abort(404)
    endpoint = _runtime().repository.get_endpoint(endpoint_id)
    if endpoint is None:
        abort(404)
    if endpoint.app_id is None:
        if visible_app_ids() is not None:  # an every-app endpoint: not for a limited user
            abort(404)
    else:
        check_app(endpoint.app_id)
    return endpoint


def _form(form: WebhookForm | None = None) -> WebhookForm:
    form = form or WebhookForm(formdata=None)
    every = [] if visible_app_ids() is not None else [("", "Every app")]
    form.app_id.choices = [*every, *((app.id, app.name) for app in visible_apps())]
    return form


def _page(
    form: WebhookForm | None = None,
    *,
    created: CreatedEndpoint | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return (
        render_template(
            "console/pages/webhooks.html",
            endpoints=visible_endpoints(),
            form=_form(form),
            created=created,
            apps={app.id: app for app in visible_apps()},
            events=SUBSCRIBABLE,
            source_app=SOURCE_APP,
        ),
        status,
    )


def _cursor() -> int | None:
    raw = request.args.get("before", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 19 or int(raw) > _DELIVERY_ID_MAX:
        abort(400, description="'before' is not a delivery id.")
    return int(raw)


def _detail(
    endpoint: WebhookEndpointRecord,
    *,
    rotated: CreatedEndpoint | None = None,
    status: int = 200,
) -> tuple[str, int]:
    deliveries: list[DeliveryRecord] = _runtime().repository.list_deliveries(
        endpoint.id, before=_cursor(), limit=DELIVERIES_PAGE
    )
    more = len(deliveries) == DELIVERIES_PAGE
    app = get_issuer_state().store.apps.get(endpoint.app_id) if endpoint.app_id else None
    return (
        render_template(
            "console/pages/webhook.html",
            endpoint=endpoint,
            app=app,
            deliveries=deliveries,
            next_before=deliveries[-1].id if more else None,
            rotated=rotated,
            source_app=SOURCE_APP,
        ),
        status,
    )


def _to_detail(endpoint_id: str) -> BaseResponse:
    return redirect(url_for("console.webhook_detail", endpoint_id=endpoint_id), 303)


@bp.get("/webhooks")
@requires_scope("webhooks:read")
def webhooks() -> Any:
    return _page()


@bp.post("/webhooks")
@requires_scope("webhooks:write")
def create_webhook() -> Any:
    form = _form(WebhookForm())
    if not form.validate():
        return _page(form, status=400)
    app_id = form.app_id.data or None
    if app_id is not None:
        check_app(app_id)
    with service_call() as outcome:
        created = service.create_endpoint(
            _runtime(),
            console_actor(),
            url=form.url.data or "",
            events=split_list(form.events.data),
            app_id=app_id,
            description=form.description.data or None,
        )
    if not outcome.ok:
        return _page(form, status=outcome.status)
    # The secret is in this answer only (Cache-Control: no-store); the store keeps it sealed.
    return _page(created=created, status=201)


@bp.get("/webhooks/<endpoint_id>")
@requires_scope("webhooks:read")
def webhook_detail(endpoint_id: str) -> Any:
    return _detail(visible_endpoint(endpoint_id))


def _set_enabled(endpoint_id: str, enabled: bool) -> Any:
    endpoint = visible_endpoint(endpoint_id)
    with service_call() as outcome:
        service.update_endpoint(_runtime(), console_actor(), endpoint, changes={"enabled": enabled})
    if not outcome.ok:
        return _detail(endpoint, status=outcome.status)
    flash("Webhook enabled." if enabled else "Webhook disabled.", "info")
    return _to_detail(endpoint.id)


@bp.post("/webhooks/<endpoint_id>/enable")
@requires_scope("webhooks:write")
def enable_webhook(endpoint_id: str) -> Any:
    return _set_enabled(endpoint_id, True)


@bp.post("/webhooks/<endpoint_id>/disable")
@requires_scope("webhooks:write")
def disable_webhook(endpoint_id: str) -> Any:
    return _set_enabled(endpoint_id, False)


@bp.post("/webhooks/<endpoint_id>/delete")
@requires_scope("webhooks:write")
def delete_webhook(endpoint_id: str) -> Any:
    endpoint = visible_endpoint(endpoint_id)
    with service_call() as outcome:
        service.delete_endpoint(_runtime(), console_actor(), endpoint)
    if not outcome.ok:
        return _detail(endpoint, status=outcome.status)
    flash("Webhook deleted.", "info")
    return redirect(url_for("console.webhooks"), 303)


@bp.post("/webhooks/<endpoint_id>/rotate-secret")
@requires_scope("webhooks:write")
@requires_recent_mfa
def rotate_webhook_secret(endpoint_id: str) -> Any:
    endpoint = visible_endpoint(endpoint_id)
    with service_call() as outcome:
        rotated = service.rotate_secret(_runtime(), console_actor(), endpoint)
    if not outcome.ok:
        return _detail(endpoint, status=outcome.status)
    # The new secret is in this answer only (Cache-Control: no-store).
    return _detail(rotated.endpoint, rotated=rotated)


@bp.post("/webhooks/<endpoint_id>/test")
@requires_scope("webhooks:write")
def test_webhook(endpoint_id: str) -> Any:
    endpoint = visible_endpoint(endpoint_id)
    with service_call() as outcome:
        delivery, result = service.send_test(_runtime(), endpoint)
    if not outcome.ok:
        return _detail(endpoint, status=outcome.status)
    what = f"Test event (delivery {delivery.id})"
    if result.ok:
        flash(f"{what} delivered: HTTP {result.status_code} in {result.latency_ms} ms.", "info")
    else:
        answer = f"HTTP {result.status_code}" if result.status_code is not None else "no answer"
        flash(f"{what} failed ({answer}): {result.error or 'error'}.", "error")
    return _to_detail(endpoint.id)


@bp.post("/webhooks/<endpoint_id>/deliveries/<int:delivery_id>/retry")
@requires_scope("webhooks:write")
def retry_webhook_delivery(endpoint_id: str, delivery_id: int) -> Any:
    endpoint = visible_endpoint(endpoint_id)
    if delivery_id > _DELIVERY_ID_MAX:
        abort(404)
    with service_call() as outcome:
        service.retry_delivery(_runtime(), endpoint, delivery_id)
    if not outcome.ok:
        return _detail(endpoint, status=outcome.status)
    flash(f"Delivery {delivery_id} queued again.", "info")
    return _to_detail(endpoint.id)
