"""Webhooks: what the outbox adds to an admin write, and how fast the worker delivers.

1. *Outbox overhead*, side by side in interleaved rounds: the same admin write (create a
   license and record its ``license.create`` change in one unit of work, as the service
   layer does), on two stores of the same kind: (a) the audit log as the only change
   listener, (b) the audit log and the webhook outbox, with one endpoint subscribed (so the
   outbox writes the event row and one delivery row). Also (c) the same write through the
   HTTP API (``POST /v1/apps/<id>/licenses`` with the Flask test client) when the API
   records its changes through the unit of work. Target: (b) at most 1.15x (a).
2. *Worker throughput*: N events queued for one endpoint, a receiver in another process
   (Python's threading HTTP server, keep-alive, answers 204), one ``Worker.run_once()`` with
   8 threads. Target: at least 200 events/s.

    .venv/bin/python benchmarks/webhooks/run.py [--writes 400] [--rounds 7] [--events 2000]
        [--postgres URL]    # '' to skip PostgreSQL
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.state import IssuerState
from flask_licensechain.store import Actor, Change
from flask_licensechain.store.webhooks import webhook_deliveries
from flask_licensechain.webhooks.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import (
    DEFAULT_POSTGRES,
    add_postgres,
    add_rounds,
    free_port,
    per_call_us,
    postgres_database,
    side_by_side,
)

ACTOR = Actor(kind="cli", id="bench")
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
RECEIVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *a):
            pass
    s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    s.daemon_threads = True
    s.serve_forever()
    """
)


def issuer(folder: Path, url: str | None, *, outbox: bool) -> IssuerState:
    app = Flask(f"bench{secrets.token_hex(3)}", instance_path=str(folder))
    app.testing = True
    options: dict[str, Any] = {"ratelimit_enabled": False, "webhooks_allow_private": True}
    if url:
        options.update(database_url=url, encryption_key=KEY)
    LicenseChain(app, **options)
    state = get_state(app)
    assert isinstance(state, IssuerState)
    state.flask_app = app  # type: ignore[attr-defined]
    if not outbox:  # the audit log alone, as before webhooks
        state.store.changes._listeners = (state.store.audit.append,)
    return state


def admin_write(state: IssuerState, app_id: str) -> Callable[[int], None]:
    store = state.store

    def write(_: int) -> None:
        with store.unit_of_work(ACTOR) as unit:
            lic = store.licenses.create(app_id, plan="pro", features=["export"])
            unit.record(Change(action="license.create", target=lic.id, app_id=app_id, subject=lic))

    return write


def api_write(state: IssuerState, app_id: str, key: str) -> Callable[[int], None]:
    client = state.flask_app.test_client()  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {key}"}

    def write(_: int) -> None:
        response = client.post(f"/v1/apps/{app_id}/licenses", json={"plan": "pro"}, headers=headers)
        assert response.status_code == 201

    return write


def api_records_changes(state: IssuerState, app_id: str, key: str) -> bool:
    """Whether the API's license creation reaches the outbox (the service layer's unit of
    work): a delivery is queued for the benchmark's endpoint."""
    count = sa.select(sa.func.count()).select_from(webhook_deliveries)

    def queued() -> int:  # a new connection each time: a fresh snapshot
        with state.store.engine.connect() as conn:
            return int(conn.execute(count).scalar_one())

    before = queued()
    api_write(state, app_id, key)(0)
    return queued() > before


def overhead(label: str, url_a: str | None, url_b: str | None, calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        a = issuer(Path(tmp) / "a", url_a, outbox=False)
        b = issuer(Path(tmp) / "b", url_b, outbox=True)
        app_a = a.store.apps.create("Bench A").id
        app_b = b.store.apps.create("Bench B").id
        assert b.webhooks is not None
        from flask_licensechain.services import webhooks as service

        service.create_endpoint(
            b.webhooks, ACTOR, url="http://127.0.0.1:9/bench", events=None, app_id=None
        )
        pairs = {
            "(a) audit only": admin_write(a, app_a),
            "(b) audit + outbox": admin_write(b, app_b),
        }
        _, key_a = a.store.api_keys.create("bench", ["*"])
        _, key_b = b.store.api_keys.create("bench", ["*"])
        through_api = api_records_changes(b, app_b, key_b)
        if through_api:
            pairs["(c) API, audit only"] = api_write(a, app_a, key_a)
            pairs["(d) API, audit + outbox"] = api_write(b, app_b, key_b)
        for fn in pairs.values():  # warm up
            per_call_us(fn, 20)
        got = side_by_side(pairs, calls, rounds)
        print(
            f"\n## Outbox overhead on {label} ({calls} writes x {rounds} rounds, "
            "median µs/write: wall, this process's CPU)"
        )
        for name, (wall, cpu) in got.items():
            print(f"  {name:28s} {wall:9.1f} {cpu:9.1f}")

        def ratio(b: str, a: str) -> str:
            by_wall, by_cpu = got[b][0] / got[a][0], got[b][1] / got[a][1]
            return f"{by_wall:.3f} by wall time, {by_cpu:.3f} by CPU  (target <= 1.15)"

        print(f"  unit of work: (b)/(a) = {ratio('(b) audit + outbox', '(a) audit only')}")
        if through_api:
            api = ratio("(d) API, audit + outbox", "(c) API, audit only")
            print(f"  API request:  (d)/(c) = {api}")
        else:
            print("  (the API does not record its changes through the unit of work yet)")
        for state in (a, b):
            state.store.dispose()
            state.denylist.close()


def throughput(label: str, url: str | None, events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = issuer(Path(tmp), url, outbox=True)
        assert state.webhooks is not None
        port = free_port()
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
        try:
            wait_port(port)
            from flask_licensechain.services import webhooks as service

            service.create_endpoint(
                state.webhooks, ACTOR, url=f"http://127.0.0.1:{port}/hook", events=None, app_id=None
            )
            app_id = state.store.apps.create("Bench").id
            write = admin_write(state, app_id)
            for i in range(events):
                write(i)
            worker = Worker(state.webhooks, threads=8)
            started = time.perf_counter()
            report = worker.run_once()
            took = time.perf_counter() - started
            assert report.succeeded == events, report
            print(
                f"\n## Worker throughput on {label}: {events} events in {took:.2f} s = "
                f"{events / took:,.0f} events/s  (target >= 200)"
            )
        finally:
            receiver.kill()
            state.webhooks.close()
            state.store.dispose()
            state.denylist.close()


def wait_port(port: int) -> None:
    import socket

    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("receiver did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=400)
    add_rounds(parser, 7)
    parser.add_argument("--events", type=int, default=2000)
    add_postgres(parser, os.environ.get("LICENSECHAIN_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    overhead("SQLite", None, None, args.writes, args.rounds)
    throughput("SQLite", None, args.events)
    if args.postgres:
        with (
            postgres_database(args.postgres) as url_a,
            postgres_database(args.postgres) as url_b,
            postgres_database(args.postgres) as url_c,  # a queue holding only the measured events
        ):
            if url_a is None or url_b is None or url_c is None:
                raise SystemExit(f"PostgreSQL not reachable at {args.postgres} ('' to skip it)")
            overhead("PostgreSQL", url_a, url_b, args.writes // 2, args.rounds)
            throughput("PostgreSQL", url_c, args.events)


if __name__ == "__main__":
    main()
