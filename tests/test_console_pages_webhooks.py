"""The console's Webhooks page: endpoints of the apps the user may see, create (the secret
shown once, no-store), enable/disable, delete, rotate the secret (recent second factor),
send a test event, the deliveries with retry; scopes, app limits and escaping.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from console_support import make_console_app, post_form, session_cookie_for, signed_in_client
from flask import Flask
from webhooks_support import ThreadReceiver

from flask_licensechain.console.sessions import COOKIE_NAME
from flask_licensechain.services import webhooks as service
from flask_licensechain.state import get_issuer_state
from flask_licensechain.store import Actor
from flask_licensechain.store.webhooks import WebhookEndpointRecord

ACCOUNT = "/console/account"
PAYLOAD = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
URL_PAYLOAD = '"><script>alert(1)</script><img/src=x/onerror=alert(1)>'
TEST_ACTOR = Actor(kind="system", id="test")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_console_app(tmp_path, LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE=True)


def _endpoint(
    app: Flask, url: str, app_id: str | None = None, **extra: str
) -> WebhookEndpointRecord:
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    created = service.create_endpoint(
        runtime, TEST_ACTOR, url=url, events=None, app_id=app_id, **extra
    )
    return created.endpoint


def _secret(html: str) -> str | None:
    found = re.search(r'value="(whsec_[^"]+)"', html)
    return found.group(1) if found else None


def test_the_owner_creates_a_webhook_and_sees_its_secret_once(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    form = {"url": "http://127.0.0.1:9/hook", "description": "Billing", "events": "", "app_id": ""}
    response = post_form(client, "/console/webhooks", form, page=ACCOUNT)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    secret = _secret(html)
    assert secret is not None
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    [endpoint] = runtime.repository.list_endpoints()[0]
    assert endpoint.url == "http://127.0.0.1:9/hook" and endpoint.events == ("*",)
    # the signing secret is the one the service sealed
    assert runtime.signing_secrets(endpoint, endpoint.created_at)
    # ... and never shown again
    listing = client.get("/console/webhooks").get_data(as_text=True)
    detail = client.get(f"/console/webhooks/{endpoint.id}").get_data(as_text=True)
    assert "Billing" in listing and secret not in listing and secret not in detail
    assert _secret(listing) is None and _secret(detail) is None


def test_a_refused_destination_or_event_is_a_message_not_a_500(tmp_path: Path) -> None:
    app = make_console_app(tmp_path)  # private destinations refused
    client, _ = signed_in_client(app, "owner")
    form = {"url": "http://127.0.0.1:9/hook", "events": "", "app_id": ""}
    response = post_form(client, "/console/webhooks", form, page=ACCOUNT)
    assert response.status_code == 400
    assert _secret(response.get_data(as_text=True)) is None
    form = {"url": "https://hooks.example.test/x", "events": "nope.event", "app_id": ""}
    response = post_form(client, "/console/webhooks", form, page=ACCOUNT)
    assert response.status_code == 400 and "nope.event" in response.get_data(as_text=True)


def test_a_role_without_webhooks_write_sees_no_button_and_gets_403(app: Flask) -> None:
    endpoint = _endpoint(app, "http://127.0.0.1:9/hook")
    client, _ = signed_in_client(app, "readonly")  # webhooks:read only
    listing = client.get("/console/webhooks")
    assert listing.status_code == 200 and "Create a webhook" not in listing.get_data(as_text=True)
    detail = client.get(f"/console/webhooks/{endpoint.id}").get_data(as_text=True)
    for label in ("Send a test event", "Disable", "Rotate the secret", "Delete"):
        assert label not in detail
    base = f"/console/webhooks/{endpoint.id}"
    for path in (
        "/console/webhooks",
        f"{base}/disable",
        f"{base}/delete",
        f"{base}/rotate-secret",
        f"{base}/test",
        f"{base}/deliveries/1/retry",
    ):
        form = {"url": "http://127.0.0.1:9/other", "app_id": ""}
        assert post_form(client, path, form, page=ACCOUNT).status_code == 403, path
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    [still] = runtime.repository.list_endpoints()[0]
    assert still.enabled and still.sealed_secret == endpoint.sealed_secret
    # a role without webhooks:read does not even see the page
    support, _ = signed_in_client(app, "support")
    assert support.get("/console/webhooks").status_code == 403
    assert support.get(f"/console/webhooks/{endpoint.id}").status_code == 403


def test_an_app_limited_user_sees_only_its_apps_webhooks(app: Flask) -> None:
    store = get_issuer_state(app).store
    mine, other = store.apps.create("Mine"), store.apps.create("Other")
    own = _endpoint(app, "http://127.0.0.1:9/mine", mine.id)
    theirs = _endpoint(app, "http://127.0.0.1:9/theirs", other.id)
    every = _endpoint(app, "http://127.0.0.1:9/every")
    client, _ = signed_in_client(app, "admin", app_ids=(mine.id,))
    listing = client.get("/console/webhooks").get_data(as_text=True)
    assert "/mine" in listing and "/theirs" not in listing and "/every" not in listing
    assert client.get(f"/console/webhooks/{own.id}").status_code == 200
    for hidden in (theirs, every):
        assert client.get(f"/console/webhooks/{hidden.id}").status_code == 404
        for action in ("disable", "delete", "test", "rotate-secret"):
            path = f"/console/webhooks/{hidden.id}/{action}"
            assert post_form(client, path, page=ACCOUNT).status_code == 404, path
    # nor can it make one for another app, or for every app
    for app_id in (other.id, ""):
        form = {"url": "http://127.0.0.1:9/new", "app_id": app_id}
        assert post_form(client, "/console/webhooks", form, page=ACCOUNT).status_code == 400
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    assert runtime.repository.list_endpoints()[1] == 3
    assert client.get("/console/webhooks/" + "x" * 500).status_code == 404


def test_send_test_shows_the_delivery_and_a_dead_one_can_be_retried(app: Flask) -> None:
    client, _ = signed_in_client(app, "admin")
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    with ThreadReceiver(statuses=[500]) as receiver:
        endpoint = _endpoint(app, receiver.url)
        page = f"/console/webhooks/{endpoint.id}"
        response = post_form(client, f"{page}/test", page=ACCOUNT)
        assert response.status_code == 303
        assert len(receiver.received) == 1
    html = client.get(page).get_data(as_text=True)
    assert "webhook.test" in html and "HTTP 500" in html and "failed (HTTP 500)" in html
    [delivery] = runtime.repository.list_deliveries(endpoint.id)
    assert delivery.status == "dead" and delivery.attempts == 1
    assert delivery.history and f"{delivery.history[-1].latency_ms} ms" in html
    response = post_form(client, f"{page}/deliveries/{delivery.id}/retry", page=ACCOUNT)
    assert response.status_code == 303
    [again] = runtime.repository.list_deliveries(endpoint.id)
    assert again.status == "pending" and again.attempts == 0
    # another endpoint's delivery, or none at all: 404, never a 500
    other = _endpoint(app, "http://127.0.0.1:9/other")
    wrong = f"/console/webhooks/{other.id}/deliveries/{delivery.id}/retry"
    assert post_form(client, wrong, page=ACCOUNT).status_code == 404
    huge = f"{page}/deliveries/{2**70}/retry"
    assert post_form(client, huge, page=ACCOUNT).status_code == 404
    assert client.get(page, query_string={"before": "x"}).status_code == 400


def test_disable_enable_delete(app: Flask) -> None:
    client, _ = signed_in_client(app, "admin")
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    endpoint = _endpoint(app, "http://127.0.0.1:9/hook")
    page = f"/console/webhooks/{endpoint.id}"
    assert post_form(client, f"{page}/disable", page=ACCOUNT).status_code == 303
    assert runtime.repository.get_endpoint(endpoint.id).enabled is False  # type: ignore[union-attr]
    assert "Enable" in client.get(page).get_data(as_text=True)
    assert post_form(client, f"{page}/enable", page=ACCOUNT).status_code == 303
    assert runtime.repository.get_endpoint(endpoint.id).enabled is True  # type: ignore[union-attr]
    assert post_form(client, f"{page}/delete", page=ACCOUNT).status_code == 303
    assert runtime.repository.get_endpoint(endpoint.id) is None
    assert client.get(page).status_code == 404


def test_rotating_the_secret_needs_a_recent_second_factor(app: Flask) -> None:
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    endpoint = _endpoint(app, "http://127.0.0.1:9/hook")
    path = f"/console/webhooks/{endpoint.id}/rotate-secret"
    client, person = signed_in_client(app, "admin")
    stale = app.test_client()
    stale.set_cookie(COOKIE_NAME, session_cookie_for(app, person, mfa_age=timedelta(days=1)))
    response = post_form(stale, path, page=ACCOUNT)
    assert response.status_code in (302, 303) and _secret(response.get_data(as_text=True)) is None
    assert runtime.repository.get_endpoint(endpoint.id).sealed_secret == endpoint.sealed_secret  # type: ignore[union-attr]
    response = post_form(client, path, page=ACCOUNT)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    secret = _secret(response.get_data(as_text=True))
    assert secret is not None
    rotated = runtime.repository.get_endpoint(endpoint.id)
    assert rotated is not None and rotated.sealed_secret != endpoint.sealed_secret
    assert rotated.sealed_previous_secret == endpoint.sealed_secret
    assert secret not in client.get(f"/console/webhooks/{endpoint.id}").get_data(as_text=True)


def test_url_and_description_are_escaped(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    url = f"http://127.0.0.1:9/hook?q={URL_PAYLOAD}"  # a URL may hold no blank
    endpoint = _endpoint(app, url, description=PAYLOAD)
    assert endpoint.url == url  # stored as given: the page must escape it
    for path in ("/console/webhooks", f"/console/webhooks/{endpoint.id}"):
        html = client.get(path).get_data(as_text=True)
        assert html.count("&lt;script&gt;") >= 2, path
        assert "<script>alert" not in html and "<img" not in html, path
