"""Sending webhooks (issue 12): Standard Webhooks signatures, a 2xx is success and anything
else is retried with exponential backoff and jitter, a per-attempt timeout, no redirects, a
64 KiB cap on the answer read, a dead delivery after the last attempt, endpoints failing
for days disabled (audit event, ``webhook.endpoint_disabled`` to the app's other
endpoints); and ``verify()`` for receivers, with its 5 minute tolerance."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer
from standardwebhooks.webhooks import Webhook
from webhooks_support import ThreadReceiver

from flask_licensechain.store import Actor, Change
from flask_licensechain.store.webhooks import AttemptRecord, Outcome, webhook_endpoints
from flask_licensechain.webhooks import InvalidWebhook, verify
from flask_licensechain.webhooks.delivery import MAX_RESPONSE_BYTES, signature_headers
from flask_licensechain.webhooks.runtime import JITTER, WebhookRuntime
from flask_licensechain.webhooks.worker import Worker


def issuer_with(tmp_path: Path, **options: Any) -> Issuer:
    return make_issuer(tmp_path, webhooks_allow_private=True, **options)


@pytest.fixture
def hooks(tmp_path: Path) -> Iterator[Issuer]:
    made = issuer_with(tmp_path, webhooks_timeout=1, webhooks_retry_schedule="0,0")
    try:
        yield made
    finally:
        close_issuer(made)


def runtime_of(issuer: Issuer) -> WebhookRuntime:
    assert issuer.state.webhooks is not None
    return issuer.state.webhooks


def endpoint(issuer: Issuer, url: str, **fields: Any) -> dict[str, Any]:
    response = issuer.client.post(
        "/v1/webhooks", json={"url": url, **fields}, headers=issuer.auth()
    )
    assert response.status_code == 201, response.get_json()
    made: dict[str, Any] = response.get_json()
    return made


def record(issuer: Issuer, app_id: str, action: str = "license.create") -> None:
    with issuer.store.unit_of_work(Actor(kind="cli", id="t")) as unit:
        lic = issuer.store.licenses.create(app_id)
        unit.record(Change(action=action, target=lic.id, app_id=app_id, subject=lic))


def attempts_of(issuer: Issuer, webhook_id: str) -> list[dict[str, Any]]:
    deliveries = issuer.client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=issuer.auth())
    return [a for d in deliveries.get_json()["data"] for a in d["attempts"]]


def test_signed_as_standard_webhooks_say(hooks: Issuer) -> None:
    with ThreadReceiver() as receiver:
        made = endpoint(hooks, receiver.url)
        record(hooks, hooks.new_app().id)
        assert Worker(runtime_of(hooks)).run_once().succeeded == 1
    [got] = receiver.received
    assert got.headers["webhook-id"].startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 30
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["content-type"] == "application/json"
    event = Webhook(made["secret"]).verify(got.body, got.headers)
    assert event["type"] == "license.created" and set(event) == {"type", "timestamp", "data"}
    tampered = got.body.replace(b"license.created", b"license.revoked")
    with pytest.raises(InvalidWebhook):
        verify(tampered, got.headers, made["secret"])


def test_the_timeout_ends_an_attempt(hooks: Issuer) -> None:
    with ThreadReceiver(delay=3) as receiver:
        made = endpoint(hooks, receiver.url)
        record(hooks, hooks.new_app().id)
        started = time.monotonic()
        report = Worker(runtime_of(hooks), threads=1).run_once()
        took = time.monotonic() - started
    assert report.failed == 3 and report.succeeded == 0
    assert took < 3 * 1 + 2.5  # three attempts of at most 1 s each, not 3 s
    assert {a["error"] for a in attempts_of(hooks, made["id"])} == {"timeout after 1 s"}


def test_redirects_are_not_followed(hooks: Issuer) -> None:
    with ThreadReceiver(statuses=[302, 302, 302]) as receiver:
        made = endpoint(hooks, receiver.url)
        record(hooks, hooks.new_app().id)
        report = Worker(runtime_of(hooks), threads=1).run_once()
    assert report.failed == 3
    assert len(receiver.received) == 3  # never the Location
    assert [a["statusCode"] for a in attempts_of(hooks, made["id"])] == [302, 302, 302]


def test_at_most_64_kib_of_the_answer_is_read(hooks: Issuer) -> None:
    runtime = runtime_of(hooks)
    with ThreadReceiver(body=b"x" * (5 * 1024 * 1024)) as receiver:
        result = runtime.sender.post(receiver.url, b"{}", {})
    assert result.ok and len(result.body) == MAX_RESPONSE_BYTES


def test_backoff_is_exponential_with_jitter_and_about_three_days(tmp_path: Path) -> None:
    issuer = issuer_with(tmp_path)
    try:
        runtime = runtime_of(issuer)
        schedule = runtime.settings.retry_schedule
        assert list(schedule) == sorted(schedule)  # never shorter than the one before
        total = sum(schedule)
        assert 2.5 * 86400 <= total <= 3.5 * 86400
        now = datetime.now(UTC)
        max_attempts = runtime.settings.max_attempts
        for attempt, nominal in enumerate(schedule, start=1):
            delays = {
                (runtime.next_attempt_at(attempt, max_attempts, now) - now).total_seconds()  # type: ignore[operator]
                for _ in range(20)
            }
            assert all(nominal * (1 - JITTER) <= d <= nominal * (1 + JITTER) for d in delays)
            assert len(delays) > 1  # jitter
        assert runtime.next_attempt_at(max_attempts, max_attempts, now) is None
    finally:
        close_issuer(issuer)


def test_a_failed_delivery_is_retried_later_then_dead(tmp_path: Path) -> None:
    issuer = issuer_with(tmp_path, webhooks_retry_schedule="0.3,0.3")
    try:
        with ThreadReceiver(statuses=[500] * 10) as receiver:
            made = endpoint(issuer, receiver.url)
            record(issuer, issuer.new_app().id)
            worker = Worker(runtime_of(issuer), threads=1)
            assert worker.run_once().failed == 1  # the retry is not due yet
            [delivery] = issuer.store.webhooks.list_deliveries(made["id"])
            assert delivery.status == "pending" and delivery.next_attempt_at is not None
            time.sleep(0.4)
            assert worker.run_once().failed == 1
            time.sleep(0.4)
            assert worker.run_once().failed == 1
            [delivery] = issuer.store.webhooks.list_deliveries(made["id"])
            assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (
                "dead",
                3,
                None,
            )
            time.sleep(0.4)
            assert worker.run_once().attempted == 0  # dead stays dead
    finally:
        close_issuer(issuer)


def test_an_endpoint_failing_for_days_is_disabled_and_the_others_told(hooks: Issuer) -> None:
    app = hooks.new_app()
    with ThreadReceiver(statuses=[500] * 3) as failing, ThreadReceiver() as healthy:
        broken = endpoint(hooks, failing.url, app_id=app.id)
        watcher = endpoint(hooks, healthy.url, app_id=app.id, events=["webhook.endpoint_disabled"])
        days_ago = datetime.now(UTC) - timedelta(days=6)
        with hooks.store.engine.begin() as conn:
            conn.execute(
                sa.update(webhook_endpoints)
                .where(webhook_endpoints.c.id == broken["id"])
                .values(failing_since=days_ago)
            )
        record(hooks, app.id)
        report = Worker(runtime_of(hooks), threads=1).run_once()
        assert report.disabled == 1
        state = hooks.client.get(f"/v1/webhooks/{broken['id']}", headers=hooks.auth()).get_json()
        assert state["active"] is False and "failed" in state["disabledReason"]
        audit = [(e.action, e.actor, e.target) for e in hooks.store.audit.list()]
        assert ("webhook.disable", "system", broken["id"]) in audit
        Worker(runtime_of(hooks), threads=1).run_once()
    told = [json.loads(r.body) for r in healthy.received]
    assert [e["type"] for e in told] == ["webhook.endpoint_disabled"]
    assert told[0]["data"]["id"] == broken["id"] and "secret" not in told[0]["data"]
    assert len(failing.received) == 1  # nothing more once disabled
    assert watcher["id"] != broken["id"]


def test_a_success_clears_the_failing_clock(hooks: Issuer) -> None:
    with ThreadReceiver(statuses=[500]) as receiver:
        made = endpoint(hooks, receiver.url)
        record(hooks, hooks.new_app().id)
        Worker(runtime_of(hooks), threads=1).run_once()
    assert hooks.store.webhooks.get_endpoint(made["id"]).failing_since is None


def test_verify_enforces_five_minutes_of_tolerance() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    raw = Webhook(secret)._whsecret
    payload = json.dumps({"type": "license.created", "timestamp": "x", "data": {}})
    now = datetime.now(UTC)
    fresh = signature_headers("msg_1", payload, [raw], now - timedelta(minutes=4))
    assert verify(payload, fresh, secret)["type"] == "license.created"
    for skew in (timedelta(minutes=6), -timedelta(minutes=6)):
        stale = signature_headers("msg_1", payload, [raw], now - skew)
        with pytest.raises(InvalidWebhook):
            verify(payload, stale, secret)
    for broken in (
        {},
        {**fresh, "webhook-signature": "v1"},
        {**fresh, "webhook-signature": "v1,AAAA"},
        {**fresh, "webhook-id": "msg_2"},
        {**fresh, "webhook-timestamp": "soon"},
    ):
        with pytest.raises(InvalidWebhook):
            verify(payload, broken, secret)
    with pytest.raises(InvalidWebhook):
        verify(b"\xff\xfe", fresh, secret)
    with pytest.raises(InvalidWebhook):
        verify(payload, fresh, "whsec_")


def test_finished_deliveries_are_deleted_after_retention(hooks: Issuer) -> None:
    with ThreadReceiver() as receiver:
        made = endpoint(hooks, receiver.url)
        record(hooks, hooks.new_app().id)
        record(hooks, hooks.new_app().id)
        Worker(runtime_of(hooks), threads=1).run_once()
    repository = hooks.store.webhooks
    assert len(repository.list_deliveries(made["id"])) == 2
    assert repository.prune(datetime.now(UTC) - timedelta(days=30)) == 0
    assert repository.prune(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert repository.list_deliveries(made["id"]) == []


def test_a_late_result_of_a_lost_lease_does_not_overwrite_the_new_owner(hooks: Issuer) -> None:
    """Fencing: worker A's lease ran out and B took the delivery over; A's late outcome is
    recorded as an attempt but leaves B's lease alone."""
    endpoint(hooks, "http://127.0.0.1:9/hook")
    record(hooks, hooks.new_app().id)
    repository = hooks.store.webhooks
    now = datetime.now(UTC)
    [mine] = repository.claim_due("worker-a", now=now, lease=timedelta(seconds=1), limit=5)
    assert repository.claim_due("worker-b", now=now, lease=timedelta(seconds=1), limit=5) == []
    later = now + timedelta(seconds=2)  # A's lease is over
    [theirs] = repository.claim_due("worker-b", now=later, lease=timedelta(seconds=60), limit=5)
    assert theirs.id == mine.id and theirs.attempts == 2
    failed = AttemptRecord(later, 500, 3, "HTTP 500")
    assert repository.finish([Outcome(mine, failed, later)]) == 0
    [row] = repository.list_deliveries(mine.endpoint_id)
    assert row.status == "pending" and len(row.history) == 1  # recorded, state untouched
    ok = AttemptRecord(later, 200, 3, None)
    assert repository.finish([Outcome(theirs, ok, None)]) == 1
    [row] = repository.list_deliveries(mine.endpoint_id)
    assert row.status == "succeeded" and len(row.history) == 2
