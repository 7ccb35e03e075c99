"""The webhook worker's two ways of running (issue 12): the command ``flask licensechain
webhooks run --once`` (one JSON report under ``--json``), and the in-process background
thread of the embedded default (``LICENSECHAIN_WEBHOOKS_BACKGROUND``), started by the first
request."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer
from webhooks_support import ThreadReceiver, wait_for

from flask_licensechain.store import Actor, Change
from flask_licensechain.store.retention import RETAINED, register_retention
from flask_licensechain.store.schema import UTCDateTime
from flask_licensechain.webhooks.worker import MAINTENANCE_INTERVAL, Worker


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


retained_visits = sa.Table(
    "lc_test_worker_visits",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ip", sa.Text),
    sa.Column("seen_at", UTCDateTime, nullable=False),
)


def test_run_once_runs_the_retention_job(tmp_path: Path) -> None:
    """The job of ``maintenance run`` also runs from the webhooks worker (issue 15)."""
    entry = register_retention(retained_visits, timestamp="seen_at", ips=("ip",))
    issuer = make_issuer(tmp_path)
    try:
        now = datetime.now(UTC)
        with issuer.store.engine.begin() as conn:
            retained_visits.create(conn)
            conn.execute(
                sa.insert(retained_visits),
                [
                    {"id": 1, "ip": "203.0.113.7", "seen_at": now - timedelta(days=200)},
                    {"id": 2, "ip": "198.51.100.9", "seen_at": now},
                ],
            )
        result = issuer.app.test_cli_runner().invoke(
            args=["licensechain", "webhooks", "run", "--once", "--json"]
        )
        assert result.exit_code == 0, result.output
        with issuer.store.engine.connect() as conn:
            ips = [ip for (ip,) in conn.execute(sa.select(retained_visits.c.ip).order_by("id"))]
        assert ips == ["203.0.113.0", "198.51.100.9"]
    finally:
        close_issuer(issuer)
        RETAINED.remove(entry)


def test_a_running_worker_runs_maintenance_at_most_hourly(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)
    runs: list[float] = []
    try:
        assert issuer.state.webhooks is not None
        worker = Worker(issuer.state.webhooks, threads=1, maintenance=lambda: runs.append(1))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()
        try:
            for _ in range(5):  # five polls of the queue
                worker.wake()
                time.sleep(0.05)
        finally:
            stop.set()
            worker.wake()
            thread.join(10)
        assert runs == [1]  # at start, not again within the hour
        assert MAINTENANCE_INTERVAL == 3600.0
    finally:
        close_issuer(issuer)
