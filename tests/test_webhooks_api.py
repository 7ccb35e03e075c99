"""``/v1/webhooks`` (issue 12): requests as LicenseChain's SDKs send them, the secret shown
once and never again (responses, audit log, logs), scopes and app-limited keys, tests,
deliveries with cursor pagination, retries by hand, and secret rotation with both
signatures during the overlap."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, error_body, make_issuer
from standardwebhooks.webhooks import Webhook
from webhooks_support import ThreadReceiver

from flask_licensechain.store import Actor, Change
from flask_licensechain.store.webhooks import webhook_endpoints
from flask_licensechain.webhooks import InvalidWebhook, verify
from flask_licensechain.webhooks.worker import Worker

SDK_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]+={0,2}$")


@pytest.fixture
def hooks(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path, webhooks_allow_private=True, webhooks_retry_schedule="0,0")
    try:
        yield made
    finally:
        close_issuer(made)


def call(issuer: Issuer, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    kwargs: dict[str, Any] = {"headers": {**SDK_HEADERS, **issuer.auth(key)}}
    if body is not None:
        kwargs["json"] = body
    return issuer.client.open(path, method=method, **kwargs)


def worker(issuer: Issuer) -> Worker:
    assert issuer.state.webhooks is not None
    return Worker(issuer.state.webhooks, threads=1)


def record_license(issuer: Issuer, app_id: str) -> Any:
    with issuer.store.unit_of_work(Actor(kind="cli", id="t")) as unit:
        lic = issuer.store.licenses.create(app_id)
        unit.record(Change(action="license.create", target=lic.id, app_id=app_id, subject=lic))
    return lic


def test_the_python_sdk_lifecycle(hooks: Issuer) -> None:
    """WebhookService of licensechain-sdk: create {url, events, secret: None}, get, update
    with PUT, list reading ``data``, delete."""
    created = call(
        hooks,
        "POST",
        "/v1/webhooks",
        {"url": "http://127.0.0.1:9/h", "events": ["license.created"], "secret": None},
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert SECRET.match(body["secret"])
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", body["id"]
    )
    assert body["events"] == ["license.created"] and body["active"] is True
    assert created.headers["Cache-Control"] == "no-store"
    webhook_id = body["id"]
    got = call(hooks, "GET", f"/v1/webhooks/{webhook_id}").get_json()
    assert "secret" not in got and got["url"] == "http://127.0.0.1:9/h"
    assert {"created_at", "updated_at", "app_id"} <= set(got)
    updated = call(
        hooks,
        "PUT",
        f"/v1/webhooks/{webhook_id}",
        {"events": ["license.revoked", "license.created"]},
    )
    assert updated.status_code == 200
    assert updated.get_json()["events"] == ["license.revoked", "license.created"]
    listed = call(hooks, "GET", "/v1/webhooks").get_json()
    assert [w["id"] for w in listed["data"]] == [webhook_id]
    assert listed["pagination"] == {"total": 1, "page": 1, "limit": 50}
    assert all("secret" not in w for w in listed["data"])
    deleted = call(hooks, "DELETE", f"/v1/webhooks/{webhook_id}")
    assert deleted.status_code == 200 and deleted.get_json()["deleted"] is True
    error_body(call(hooks, "GET", f"/v1/webhooks/{webhook_id}"), 404, "not_found")


def test_a_secret_given_is_used_and_a_bad_one_refused(hooks: Issuer) -> None:
    mine = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    created = call(hooks, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h", "secret": mine})
    assert created.status_code == 201 and created.get_json()["secret"] == mine
    for bad in ("plain", "whsec_!!!", "whsec_" + "QUJD"):
        refused = call(
            hooks, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h", "secret": bad}
        )
        error_body(refused, 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": 5},
        {"url": "not a url"},
        {"url": "ftp://127.0.0.1/x"},
        {"url": "http://u:p@127.0.0.1/x"},
        {"url": "http://127.0.0.1:9/h", "events": ["license.exploded"]},
        {"url": "http://127.0.0.1:9/h", "events": "license.created"},
        {"url": "http://127.0.0.1:9/h", "surprise": 1},
        {"url": "http://127.0.0.1:9/h", "app_id": "app_missing"},
    ],
)
def test_bad_bodies_are_clear_errors(hooks: Issuer, body: dict[str, Any]) -> None:
    response = call(hooks, "POST", "/v1/webhooks", body)
    assert response.status_code in (400, 404), response.get_json()
    error_body(
        response,
        response.status_code,
        "invalid_request" if response.status_code == 400 else "not_found",
    )


def test_scopes(hooks: Issuer) -> None:
    reader = hooks.api_key("licenses:read")
    error_body(call(hooks, "GET", "/v1/webhooks", key=reader), 403, "insufficient_scope")
    error_body(
        call(hooks, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h"}, key=reader),
        403,
        "insufficient_scope",
    )
    writer = hooks.api_key("webhooks:write")
    created = call(hooks, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h"}, key=writer)
    assert created.status_code == 201
    assert call(hooks, "GET", "/v1/webhooks").status_code == 200
    assert hooks.client.get("/v1/webhooks").status_code == 401


def test_app_limited_keys_keep_to_their_app(hooks: Issuer) -> None:
    mine, other = hooks.new_app(name="Mine"), hooks.new_app(name="Other")
    _, limited = hooks.store.api_keys.create("app key", ["*"], app_id=mine.id)
    theirs = call(
        hooks, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/o", "app_id": other.id}
    )
    everyone = call(hooks, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/all"})
    made = call(hooks, "POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/m"}, key=limited)
    assert made.status_code == 201 and made.get_json()["appId"] == mine.id
    error_body(
        call(
            hooks,
            "POST",
            "/v1/webhooks",
            {"url": "http://127.0.0.1:9/x", "app_id": other.id},
            key=limited,
        ),
        404,
        "not_found",
    )
    listed = call(hooks, "GET", "/v1/webhooks", key=limited).get_json()["data"]
    assert [w["id"] for w in listed] == [made.get_json()["id"]]
    for hidden in (theirs.get_json()["id"], everyone.get_json()["id"]):
        for method, path in (
            ("GET", f"/v1/webhooks/{hidden}"),
            ("PATCH", f"/v1/webhooks/{hidden}"),
            ("DELETE", f"/v1/webhooks/{hidden}"),
            ("POST", f"/v1/webhooks/{hidden}/rotate-secret"),
            ("POST", f"/v1/webhooks/{hidden}/test"),
            ("GET", f"/v1/webhooks/{hidden}/deliveries"),
        ):
            error_body(call(hooks, method, path, key=limited), 404, "not_found")


def test_the_secret_never_shows_again(hooks: Issuer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ThreadReceiver() as receiver:
        created = call(hooks, "POST", "/v1/webhooks", {"url": receiver.url}).get_json()
        secret = created["secret"]
        raw_part = secret.removeprefix("whsec_")
        rotated = call(hooks, "POST", f"/v1/webhooks/{created['id']}/rotate-secret").get_json()
        new_secret = rotated["secret"]
        record_license(hooks, hooks.new_app().id)
        worker(hooks).run_once()
        call(hooks, "POST", f"/v1/webhooks/{created['id']}/test")
    seen = [
        json.dumps(call(hooks, "GET", f"/v1/webhooks/{created['id']}").get_json()),
        json.dumps(call(hooks, "GET", "/v1/webhooks").get_json()),
        json.dumps(call(hooks, "GET", f"/v1/webhooks/{created['id']}/deliveries").get_json()),
        json.dumps([e.data for e in hooks.store.audit.list()]),
        caplog.text,
        repr(hooks.store.webhooks.get_endpoint(created["id"])),
    ]
    for text in seen:
        for s in (secret, raw_part, new_secret, new_secret.removeprefix("whsec_")):
            assert s not in text
    actions = [e.action for e in hooks.store.audit.list()]
    assert {"webhook.create", "webhook.rotate_secret"} <= set(actions)
    # at rest: sealed (core/sealing.py's format), never the secret's bytes
    with hooks.store.engine.connect() as conn:
        sealed = conn.execute(
            sa.select(webhook_endpoints.c.sealed_secret, webhook_endpoints.c.sealed_previous_secret)
        ).one()
    raw = [base64.b64decode(x.removeprefix("whsec_")) for x in (secret, new_secret)]
    for value in sealed:
        assert value.startswith(b"lcs1.")
        assert not any(r in value or base64.b64encode(r) in value for r in raw)


def test_rotation_signs_with_both_secrets_during_the_overlap(hooks: Issuer) -> None:
    with ThreadReceiver() as receiver:
        created = call(hooks, "POST", "/v1/webhooks", {"url": receiver.url}).get_json()
        rotated = call(hooks, "POST", f"/v1/webhooks/{created['id']}/rotate-secret")
        assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
        body = rotated.get_json()
        assert body["previousSecretExpiresAt"] is not None and body["secret"] != created["secret"]
        record_license(hooks, hooks.new_app().id)
        assert worker(hooks).run_once().succeeded == 1
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (created["secret"], body["secret"]):
        assert Webhook(secret).verify(got.body, got.headers)["type"] == "license.created"
        assert verify(got.body, got.headers, secret)["type"] == "license.created"
    with pytest.raises(InvalidWebhook):
        verify(got.body, got.headers, "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")


def test_the_test_endpoint_sends_and_reports(hooks: Issuer) -> None:
    with ThreadReceiver(statuses=[503]) as receiver:
        created = call(hooks, "POST", "/v1/webhooks", {"url": receiver.url}).get_json()
        failed = call(hooks, "POST", f"/v1/webhooks/{created['id']}/test").get_json()
        assert (failed["success"], failed["statusCode"], failed["error"]) == (
            False,
            503,
            "HTTP 503",
        )
        assert failed["delivery"]["status"] == "dead"
        ok = call(hooks, "POST", f"/v1/webhooks/{created['id']}/test").get_json()
        assert (ok["success"], ok["statusCode"], ok["delivery"]["status"]) == (
            True,
            200,
            "succeeded",
        )
        event = verify(receiver.received[-1].body, receiver.received[-1].headers, created["secret"])
        assert event["type"] == "webhook.test"


def test_deliveries_paginate_with_a_cursor_and_dead_ones_retry_by_hand(hooks: Issuer) -> None:
    app = hooks.new_app()
    with ThreadReceiver(statuses=[500] * 9) as receiver:
        created = call(hooks, "POST", "/v1/webhooks", {"url": receiver.url}).get_json()
        for _ in range(3):
            record_license(hooks, app.id)
        # a schedule of two retries at 0 s: three attempts each, all failing
        report = worker(hooks).run_once()
        assert (report.attempted, report.failed) == (9, 9)
        path = f"/v1/webhooks/{created['id']}/deliveries"
        first = call(hooks, "GET", path + "?limit=2").get_json()
        assert len(first["data"]) == 2 and first["nextCursor"]
        second = call(hooks, "GET", f"{path}?limit=2&cursor={first['nextCursor']}").get_json()
        assert len(second["data"]) == 1 and second["nextCursor"] is None
        every = first["data"] + second["data"]
        assert len({d["id"] for d in every}) == 3
        for delivery in every:
            assert delivery["status"] == "dead" and delivery["eventType"] == "license.created"
            assert [a["statusCode"] for a in delivery["attempts"]] == [500, 500, 500]
            assert all(
                a["error"] == "HTTP 500" and a["latencyMs"] >= 0 for a in delivery["attempts"]
            )
        error_body(call(hooks, "GET", path + "?cursor=%%%"), 400, "invalid_request")
        dead = every[0]["id"]
        retried = call(hooks, "POST", f"{path}/{dead}/retry")
        assert retried.status_code == 202 and retried.get_json()["status"] == "pending"
        assert worker(hooks).run_once().succeeded == 1
        again = call(hooks, "GET", path).get_json()["data"]
        [that] = [d for d in again if d["id"] == dead]
        assert that["status"] == "succeeded" and len(that["attempts"]) == 4
        error_body(call(hooks, "POST", f"{path}/99999/retry"), 404, "not_found")
        error_body(call(hooks, "POST", f"{path}/x1/retry"), 404, "not_found")
