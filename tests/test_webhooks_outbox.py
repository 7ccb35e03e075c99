"""The durable outbox (issue 12): an event is written in the transaction of the change that
causes it. A rolled-back change sends nothing; a process that dies right after the commit
loses nothing. Endpoints get the events they subscribe to, of their app (or of every app);
an app's ``webhook_url`` is an endpoint for all of that app's events; the license-expiry
sweeper announces each expiry once. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer
from webhooks_support import ThreadReceiver, worker_env

from flask_licensechain.serialize import license_json
from flask_licensechain.services import webhooks as service
from flask_licensechain.store import Actor, Change, migrate, open_store
from flask_licensechain.store.changes import SYSTEM
from flask_licensechain.store.webhooks import webhook_deliveries
from flask_licensechain.webhooks.runtime import WebhookRuntime
from flask_licensechain.webhooks.worker import Worker

ACTOR = Actor(kind="cli", id="tester")


@pytest.fixture(params=["sqlite", "postgres"])
def hooks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Issuer]:
    url = None
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    made = make_issuer(tmp_path, url, webhooks_allow_private=True)
    try:
        yield made
    finally:
        close_issuer(made)


def runtime_of(issuer: Issuer) -> WebhookRuntime:
    runtime = issuer.state.webhooks
    assert runtime is not None
    return runtime


def add_endpoint(issuer: Issuer, url: str, **fields: Any) -> dict[str, Any]:
    body = {"url": url, **fields}
    response = issuer.client.post("/v1/webhooks", json=body, headers=issuer.auth())
    assert response.status_code == 201, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def queued(issuer: Issuer) -> list[dict[str, Any]]:
    """Every queued delivery: endpoint, event type and payload."""
    d = webhook_deliveries.c
    query = sa.select(d.endpoint_id, d.event_type.label("type"), d.payload)
    with issuer.store.engine.connect() as conn:
        rows = conn.execute(query.order_by(webhook_deliveries.c.id)).all()
    return [
        {"endpoint": r.endpoint_id, "type": r.type, "payload": json.loads(r.payload)} for r in rows
    ]


def create_license(issuer: Issuer, app_id: str, **fields: Any) -> Any:
    """A license created through a unit of work that records its change, as the
    service layer does."""
    with issuer.store.unit_of_work(ACTOR) as unit:
        lic = issuer.store.licenses.create(app_id, **fields)
        unit.record(Change(action="license.create", target=lic.id, app_id=app_id, subject=lic))
    return lic


class Boom(Exception):
    pass


def test_the_event_commits_with_the_change(hooks: Issuer) -> None:
    app = hooks.new_app()
    endpoint = add_endpoint(hooks, "http://127.0.0.1:9/hook", app_id=app.id)
    lic = create_license(hooks, app.id, plan="pro", issued_email="a@b.example")
    [row] = queued(hooks)
    assert row["endpoint"] == endpoint["id"]
    assert row["type"] == "license.created"
    payload = row["payload"]
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "license.created"
    # ``data`` is the license as the API returns it
    fresh = hooks.store.licenses.get(lic.id)
    expected = license_json(fresh, datetime.now(UTC))
    assert payload["data"] == expected
    api = hooks.client.get(f"/v1/licenses/{lic.id}", headers=hooks.auth()).get_json()
    assert payload["data"] == api


def test_a_rolled_back_change_sends_nothing(hooks: Issuer) -> None:
    app = hooks.new_app()
    add_endpoint(hooks, "http://127.0.0.1:9/hook")
    with pytest.raises(Boom), hooks.store.unit_of_work(ACTOR) as unit:
        lic = hooks.store.licenses.create(app.id)
        unit.record(Change(action="license.create", target=lic.id, app_id=app.id, subject=lic))
        assert len(queued(hooks)) == 0 or hooks.store.backend == "sqlite"
        raise Boom
    assert queued(hooks) == []
    assert hooks.store.licenses.get(lic.id) is None


def test_a_failing_outbox_rolls_the_change_back(
    hooks: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox is part of the transaction: if it cannot write, the change does not
    happen either (no change without its event)."""
    app = hooks.new_app()
    add_endpoint(hooks, "http://127.0.0.1:9/hook")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise Boom

    monkeypatch.setattr(hooks.store.webhooks, "add_event", refuse)
    with pytest.raises(Boom), hooks.store.unit_of_work(ACTOR) as unit:
        lic = hooks.store.licenses.create(app.id)
        unit.record(Change(action="license.create", target=lic.id, app_id=app.id, subject=lic))
    assert hooks.store.licenses.get(lic.id) is None


def test_endpoints_get_what_they_subscribe_to_of_their_app(hooks: Issuer) -> None:
    mine, other = hooks.new_app(name="Mine"), hooks.new_app(name="Other")
    everything = add_endpoint(hooks, "http://127.0.0.1:9/all")
    revocations = add_endpoint(
        hooks, "http://127.0.0.1:9/rev", events=["license.revoked"], app_id=mine.id
    )
    others = add_endpoint(hooks, "http://127.0.0.1:9/other", app_id=other.id)
    lic = create_license(hooks, mine.id)
    with hooks.store.unit_of_work(ACTOR) as unit:
        revoked = hooks.store.licenses.set_status(lic.id, "REVOKED")
        unit.record(Change(action="license.revoke", target=lic.id, app_id=mine.id, subject=revoked))
        unit.record(Change(action="app.update", target=mine.id, app_id=mine.id))  # no event
    got = [(row["endpoint"], row["type"]) for row in queued(hooks)]
    assert sorted(got) == sorted(
        [
            (everything["id"], "license.created"),
            (everything["id"], "license.revoked"),
            (revocations["id"], "license.revoked"),
        ]
    )
    assert others["id"] not in {endpoint for endpoint, _ in got}
    [revoked_payload] = [r["payload"] for r in queued(hooks) if r["endpoint"] == revocations["id"]]
    assert revoked_payload["data"]["status"] == "REVOKED"


def test_a_disabled_endpoint_gets_nothing(hooks: Issuer) -> None:
    app = hooks.new_app()
    endpoint = add_endpoint(hooks, "http://127.0.0.1:9/hook")
    response = hooks.client.patch(
        f"/v1/webhooks/{endpoint['id']}", json={"enabled": False}, headers=hooks.auth()
    )
    assert response.status_code == 200 and response.get_json()["active"] is False
    create_license(hooks, app.id)
    assert queued(hooks) == []


def test_an_apps_webhook_url_receives_all_of_its_events(hooks: Issuer) -> None:
    with hooks.store.unit_of_work(ACTOR) as unit:  # as the apps service records it
        app = hooks.store.apps.create("Hooked", webhook_url="http://127.0.0.1:9/app-hook")
        unit.record(Change(action="app.create", target=app.id, app_id=app.id, subject=app))
    other = hooks.new_app(name="Other")
    create_license(hooks, app.id)
    create_license(hooks, other.id)
    listed = hooks.client.get("/v1/webhooks", headers=hooks.auth()).get_json()["data"]
    [managed] = [e for e in listed if e["source"] == "app"]
    assert (managed["url"], managed["appId"], managed["events"]) == (
        "http://127.0.0.1:9/app-hook",
        app.id,
        ["*"],
    )
    assert [(r["endpoint"], r["type"]) for r in queued(hooks)] == [
        (managed["id"], "license.created")
    ]
    # the app's endpoint follows its URL, and cannot be edited or deleted as a webhook
    refused = hooks.client.put(
        f"/v1/webhooks/{managed['id']}", json={"url": "http://127.0.0.1:9/x"}, headers=hooks.auth()
    )
    assert refused.status_code == 409
    assert (
        hooks.client.delete(f"/v1/webhooks/{managed['id']}", headers=hooks.auth()).status_code
        == 409
    )
    with hooks.store.unit_of_work(ACTOR) as unit:
        cleared = hooks.store.apps.update(app.id, webhook_url=None)
        unit.record(Change(action="app.update", target=app.id, app_id=app.id, subject=cleared))
    create_license(hooks, app.id)
    listed = hooks.client.get("/v1/webhooks", headers=hooks.auth()).get_json()["data"]
    assert [e for e in listed if e["source"] == "app"] == []


def test_the_sweeper_announces_each_expiry_once(hooks: Issuer) -> None:
    app = hooks.new_app()
    add_endpoint(hooks, "http://127.0.0.1:9/hook")
    past = datetime.now(UTC) - timedelta(minutes=1)
    lic = hooks.store.licenses.create(app.id, expires_at=past)
    hooks.store.licenses.create(app.id, expires_at=datetime.now(UTC) + timedelta(days=1))
    runtime = runtime_of(hooks)
    assert service.announce_expirations(runtime) == 1
    assert service.announce_expirations(runtime) == 0
    [row] = queued(hooks)
    assert row["type"] == "license.expired"
    assert row["payload"]["data"]["id"] == lic.id
    assert row["payload"]["data"]["status"] == "EXPIRED"
    audit = [(e.action, e.actor, e.target) for e in hooks.store.audit.list()]
    assert ("license.expire", SYSTEM.id, lic.id) in audit
    # extended, then past again: a new expiry, announced once more
    hooks.store.licenses.update(lic.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert service.announce_expirations(runtime) == 1
    assert [r["type"] for r in queued(hooks)] == ["license.expired", "license.expired"]


def test_a_crash_right_after_the_commit_loses_nothing(tmp_path: Path) -> None:
    """A process commits a change and dies at once (os._exit, nothing flushed or
    cleaned up); the worker of another process delivers its event."""
    issuer = make_issuer(tmp_path, webhooks_allow_private=True)
    try:
        with ThreadReceiver() as receiver:
            app = issuer.new_app()
            add_endpoint(issuer, receiver.url, app_id=app.id)
            database = issuer.state.settings.database_url or (
                f"sqlite:///{tmp_path / 'instance' / 'licensechain.db'}"
            )
            env = worker_env(database, tmp_path / "instance")
            script = textwrap.dedent(
                f"""
                import os
                from issuer_app import create_app
                from flask_licensechain import get_state
                from flask_licensechain.store import Actor, Change, migrate, open_store
                state = get_state(create_app())
                store = state.store
                with store.unit_of_work(Actor(kind="cli", id="crasher")) as unit:
                    lic = store.licenses.create({app.id!r}, plan="crash")
                    unit.record(Change(action="license.create", target=lic.id,
                                       app_id={app.id!r}, subject=lic))
                os._exit(137)
                """
            )
            crashed = subprocess.run(
                [sys.executable, "-c", script],
                env=env,
                cwd=Path(__file__).parent / "interop",
                capture_output=True,
                timeout=60,
            )
            assert crashed.returncode == 137, crashed.stderr.decode()[-2000:]
            report = Worker(runtime_of(issuer), threads=1).run_once()
            assert report.succeeded == 1
            [got] = receiver.received
            event = json.loads(got.body)
            assert (event["type"], event["data"]["plan"]) == ("license.created", "crash")
    finally:
        close_issuer(issuer)


def test_apps_with_a_webhook_url_before_the_migration_get_their_endpoint(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.upgrade_schema()
        migrate.downgrade(store.database, "0005")  # the revision before the webhooks
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO lc_apps (id, name, slug, tier, webhook_url, allowed_origins, "
                    "created_at, updated_at) VALUES ('app_old', 'Old', 'old', 'free', "
                    "'https://old.example/hook', '[]', '2026-01-01 00:00:00.000000', "
                    "'2026-01-01 00:00:00.000000')"
                )
            )
        store.upgrade_schema()
        [endpoint], _ = store.webhooks.list_endpoints()
        assert (endpoint.app_id, endpoint.url, endpoint.source, endpoint.events) == (
            "app_old",
            "https://old.example/hook",
            "app",
            ("*",),
        )
        assert endpoint.sealed_secret is None  # made at first use, by the worker
    finally:
        store.dispose()
