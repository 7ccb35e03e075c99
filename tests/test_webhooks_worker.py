"""The webhook worker's two ways of running (issue 12): the command ``flask licensechain
webhooks run --once`` (one JSON report under ``--json``), and the in-process background
thread of the embedded default (``LICENSECHAIN_WEBHOOKS_BACKGROUND``), started by the first
request."""

from __future__ import annotations

import json
from pathlib import Path

from issuer_support import Issuer, close_issuer, make_issuer
from webhooks_support import ThreadReceiver, wait_for

from flask_licensechain.store import Actor, Change


def record(issuer: Issuer) -> str:
    app = issuer.new_app()
    with issuer.store.unit_of_work(Actor(kind="cli", id="t")) as unit:
        lic = issuer.store.licenses.create(app.id)
        unit.record(Change(action="license.create", target=lic.id, app_id=app.id, subject=lic))
    return str(lic.id)


def add_endpoint(issuer: Issuer, url: str) -> None:
    made = issuer.client.post("/v1/webhooks", json={"url": url}, headers=issuer.auth())
    assert made.status_code == 201


def test_run_once_delivers_what_is_due_and_reports(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path, webhooks_allow_private=True)
    try:
        with ThreadReceiver() as receiver:
            add_endpoint(issuer, receiver.url)
            record(issuer)
            record(issuer)
            result = issuer.app.test_cli_runner().invoke(
                args=["licensechain", "webhooks", "run", "--once", "--json"]
            )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert (report["attempted"], report["succeeded"], report["failed"]) == (2, 2, 0)
        assert len(receiver.received) == 2
    finally:
        close_issuer(issuer)


def test_the_background_thread_delivers_without_a_worker_command(tmp_path: Path) -> None:
    issuer = make_issuer(
        tmp_path,
        webhooks_allow_private=True,
        webhooks_background=True,
        webhooks_poll_interval=30,  # the commit wakes the thread: no waiting for a poll
    )
    worker = issuer.state.webhook_worker
    assert worker is not None
    try:
        with ThreadReceiver() as receiver:
            add_endpoint(issuer, receiver.url)  # the first request starts the thread
            license_id = record(issuer)
            wait_for(lambda: receiver.received, 10, "a delivery from the background thread")
        event = json.loads(receiver.received[0].body)
        assert (event["type"], event["data"]["id"]) == ("license.created", license_id)
    finally:
        worker.stop()
        close_issuer(issuer)


def test_no_background_thread_unless_asked(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    try:
        assert issuer.state.webhook_worker is None
    finally:
        close_issuer(issuer)
