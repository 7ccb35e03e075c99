"""Webhooks with real processes (issue 12): a receiver process that verifies every delivery
with the ``standardwebhooks`` library itself, and worker processes (``flask licensechain
webhooks run``). The receiver killed for a while: nothing is lost, the retries arrive once
it is back. A worker killed in the middle of a delivery: the delivery is sent again by
another worker, not lost. Two workers on PostgreSQL: every event delivered, none twice."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from issuer_support import Issuer, close_issuer, make_issuer
from webhooks_support import ReceiverProcess, start_worker, stop, wait_for, worker_env

from flask_licensechain.store import Actor, Change

pytestmark = pytest.mark.slow

ACTOR = Actor(kind="cli", id="tester")


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path, webhooks_allow_private=True)
    try:
        yield made
    finally:
        close_issuer(made)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'instance' / 'licensechain.db'}"


def endpoint(issuer: Issuer, url: str) -> dict[str, Any]:
    response = issuer.client.post("/v1/webhooks", json={"url": url}, headers=issuer.auth())
    assert response.status_code == 201, response.get_json()
    made: dict[str, Any] = response.get_json()
    return made


def record_licenses(issuer: Issuer, app_id: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        with issuer.store.unit_of_work(ACTOR) as unit:
            lic = issuer.store.licenses.create(app_id)
            unit.record(Change(action="license.create", target=lic.id, app_id=app_id, subject=lic))
        ids.append(lic.id)
    return ids


def delivered(receiver: ReceiverProcess) -> list[dict[str, Any]]:
    return [line for line in receiver.lines() if line.get("answered") == 200]


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for item in started:
        if isinstance(item, ReceiverProcess):
            item.kill()
        else:
            stop(item, signal.SIGKILL)


def test_changes_made_through_the_api_arrive_signed(
    issuer: Issuer, tmp_path: Path, processes: list[Any]
) -> None:
    port = free_port()
    made = endpoint(issuer, f"http://127.0.0.1:{port}/hook")
    receiver = ReceiverProcess(port, made["secret"], tmp_path / "got.jsonl").start()
    processes.append(receiver)
    worker = start_worker(worker_env(sqlite_url(tmp_path), tmp_path / "instance"))
    processes.append(worker)
    app = issuer.client.post("/v1/apps", json={"name": "Shop"}, headers=issuer.auth()).get_json()
    licenses = []
    for _ in range(2):
        created = issuer.client.post(
            f"/v1/apps/{app['id']}/licenses", json={"plan": "pro"}, headers=issuer.auth()
        )
        assert created.status_code == 201
        licenses.append(created.get_json()["id"])
    revoke = issuer.client.patch(f"/v1/licenses/{licenses[0]}/revoke", headers=issuer.auth())
    suspend = issuer.client.patch(f"/v1/licenses/{licenses[1]}/suspend", headers=issuer.auth())
    assert (revoke.status_code, suspend.status_code) == (200, 200)
    expected = {
        ("license.created", licenses[0]),
        ("license.created", licenses[1]),
        ("license.revoked", licenses[0]),
        ("license.suspended", licenses[1]),
    }

    def arrived() -> bool:
        got = {(line["type"], line["data"].get("id")) for line in delivered(receiver)}
        return expected <= got

    wait_for(arrived, 30, "the API's events at the receiver")
    lines = receiver.lines()
    assert not [line for line in lines if "invalid" in line]
    statuses = {
        line["data"]["id"]: line["data"]["status"]
        for line in delivered(receiver)
        if line["type"] != "license.created"
    }
    assert statuses == {licenses[0]: "REVOKED", licenses[1]: "SUSPENDED"}


def test_a_receiver_down_for_a_while_loses_nothing(
    issuer: Issuer, tmp_path: Path, processes: list[Any]
) -> None:
    port = free_port()
    made = endpoint(issuer, f"http://127.0.0.1:{port}/hook")
    out = tmp_path / "got.jsonl"
    receiver = ReceiverProcess(port, made["secret"], out).start()
    processes.append(receiver)
    env = worker_env(
        sqlite_url(tmp_path), tmp_path / "instance", webhooks_retry_schedule="0.3,0.5,1,1,1,2,2,2"
    )
    processes.append(start_worker(env))
    app = issuer.new_app()
    first = record_licenses(issuer, app.id, 2)
    wait_for(lambda: len(delivered(receiver)) >= 2, 30, "the first events")
    receiver.kill()
    later = record_licenses(issuer, app.id, 5)
    webhook_id = made["id"]

    def failing() -> bool:
        found = issuer.store.webhooks.list_deliveries(webhook_id)
        return sum(1 for d in found if d.last_error is not None) >= 5

    wait_for(failing, 30, "failed attempts while the receiver is down")
    time.sleep(1.0)  # down for a while: several attempts each
    receiver = ReceiverProcess(port, made["secret"], out).start()
    processes.append(receiver)
    wait_for(lambda: len(delivered(receiver)) >= 7, 40, "every event once the receiver is back")
    got = {line["data"]["id"] for line in delivered(receiver)}
    assert got == set(first + later)

    def all_succeeded() -> list[Any]:
        found = issuer.store.webhooks.list_deliveries(webhook_id)
        return found if all(d.status == "succeeded" for d in found) else []

    found = wait_for(all_succeeded, 20, "the worker to record every success")
    assert len(found) == 7
    assert len([d for d in found if len(d.history) > 1]) >= 5  # retried while it was down


def test_a_worker_killed_mid_delivery_leaves_it_to_another(
    issuer: Issuer, tmp_path: Path, processes: list[Any]
) -> None:
    port = free_port()
    made = endpoint(issuer, f"http://127.0.0.1:{port}/hook")
    receiver = ReceiverProcess(port, made["secret"], tmp_path / "got.jsonl", ["--hang-first"])
    processes.append(receiver.start())
    env = worker_env(sqlite_url(tmp_path), tmp_path / "instance", webhooks_timeout="1")
    first_worker = start_worker(env)
    processes.append(first_worker)
    [license_id] = record_licenses(issuer, issuer.new_app().id, 1)
    hanging = wait_for(
        lambda: [line for line in receiver.lines() if "hanging" in line], 30, "the first attempt"
    )
    first_worker.kill()  # SIGKILL in the middle of the attempt: no cleanup at all
    first_worker.wait(10)
    killed_at = time.monotonic()
    processes.append(start_worker(env))
    [line] = wait_for(lambda: delivered(receiver), 30, "the delivery from the second worker")
    assert line["id"] == hanging[0]["hanging"]  # the same message, same webhook-id
    assert line["data"]["id"] == license_id
    # not before the first worker's lease (1 s timeout + 5 s) ran out
    assert time.monotonic() - killed_at >= 3


@pytest.mark.postgres
def test_two_workers_on_postgresql_share_the_queue(
    tmp_path: Path, postgres_url: str, processes: list[Any]
) -> None:
    issuer = make_issuer(tmp_path, postgres_url, webhooks_allow_private=True)
    try:
        port = free_port()
        made = endpoint(issuer, f"http://127.0.0.1:{port}/hook")
        receiver = ReceiverProcess(
            port, made["secret"], tmp_path / "got.jsonl", ["--delay", "0.02"]
        ).start()
        processes.append(receiver)
        app = issuer.new_app()
        expected = set(record_licenses(issuer, app.id, 80))
        env = worker_env(postgres_url, tmp_path / "instance")
        workers = [start_worker(env, "--threads", "4") for _ in range(2)]
        processes.extend(workers)
        wait_for(lambda: len(delivered(receiver)) >= len(expected), 60, "every event")
        time.sleep(0.5)  # a duplicate, if any, would arrive now
        reports = [json.loads(stop(w)[0].decode().strip().splitlines()[-1]) for w in workers]
        lines = delivered(receiver)
        ids = [line["id"] for line in lines]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert {line["data"]["id"] for line in lines} == expected, "an event was skipped"
        assert all(report["succeeded"] > 0 for report in reports), reports
        assert sum(report["succeeded"] for report in reports) == len(expected)
    finally:
        close_issuer(issuer)
