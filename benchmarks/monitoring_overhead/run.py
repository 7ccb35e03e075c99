"""What monitoring adds to ``POST /v1/licenses/verify``: side by side, interleaved rounds.

Setups (one issuer app each, SQLite store, rate limits off, the same 100 licenses' keys):

- *off*: signals, metrics, security headers and access log all off;
- *default*: the defaults (signals counted in memory, security headers; no metrics);
- *metrics*: the defaults plus metrics (``LICENSECHAIN_METRICS_PATH``);
- *metrics+redis*: as *metrics*, with the signals counted in Redis (``--redis``);
- *all+log*: as *metrics*, with the JSON access log on (written to a null handler).

Each call is the app's WSGI callable with a prebuilt environ (no test client). Rounds of
``--calls`` calls run in turn for every setup (the order rotating); the median round's
CPU time of the process (the signal thread included) gives µs per verify, and the
ratio to *off* is printed. Run with ``--multiproc`` to repeat the whole comparison in a child
process with ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus-client's file-backed values, as
under gunicorn).

    .venv/bin/python benchmarks/monitoring_overhead/run.py [--calls 100] [--rounds 41]
        [--redis redis://127.0.0.1:6379/0] [--multiproc]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.monitoring import access_log

LICENSES = 100
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
VERIFY_PATH = "/v1/licenses/verify"

OFF = {
    "LICENSECHAIN_SIGNALS_ENABLED": False,
    "LICENSECHAIN_SECURITY_HEADERS": False,
}
METRICS = {"LICENSECHAIN_METRICS_PATH": "/metrics"}


def _environ(body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": VERIFY_PATH,
        "QUERY_STRING": "",
        "SERVER_NAME": "bench.local",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.10",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def build(
    name: str, instance: Path, keys: list[str] | None, config: dict[str, Any]
) -> tuple[flask.Flask, list[str]]:
    app = flask.Flask(name, instance_path=str(instance / name))
    app.config.update(
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{instance / 'bench.db'}",
        LICENSECHAIN_ENCRYPTION_KEY=ENCRYPTION_KEY,
        LICENSECHAIN_ISSUER="https://licenses.example.test/v1",
        LICENSECHAIN_RATELIMIT_ENABLED=False,
        **config,
    )
    LicenseChain(app)
    if keys is None:
        store = get_state(app).store
        assert store is not None
        seller = store.apps.create("bench", tier="pro")
        keys = [store.licenses.create(seller.id).key for _ in range(LICENSES)]
    return app, keys


def caller(app: flask.Flask, keys: list[str]) -> Callable[[int], None]:
    bodies = [json.dumps({"key": key}).encode() for key in keys]
    environs = [_environ(body) for body in bodies]

    def call(i: int) -> None:
        k = i % len(bodies)
        environ = dict(environs[k])
        environ["wsgi.input"] = io.BytesIO(bodies[k])
        status: list[str] = []

        def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
            status.append(s)

        result = app.wsgi_app(environ, start_response)
        body = b"".join(result)
        if status[0] != "200 OK" or b'"valid":true' not in body:
            raise SystemExit(f"unexpected answer: {status} {body[:200]!r}")

    return call


def measure(setups: dict[str, Callable[[int], None]], calls: int, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in setups}
    for call in setups.values():  # warm up: key ring, caches, first connection
        for i in range(50):
            call(i)
    names = list(setups)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            call = setups[name]
            start = time.process_time()  # CPU of the whole process, the flush thread too
            for i in range(calls):
                call(i)
            times[name].append((time.process_time() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def request_hooks_cost(app: flask.Flask, calls: int = 5000) -> float:
    """µs of the app-level request hooks (clock, metrics, log, headers) around a verify,
    without the view: Flask's own ``before_request``/``after_request`` lists, median of 7."""
    befores = list(app.before_request_funcs.get(None, ()))
    afters = list(reversed(app.after_request_funcs.get(None, ())))
    runs = []
    with app.test_request_context(VERIFY_PATH, method="POST"):
        for _ in range(7):
            start = time.process_time()
            for _ in range(calls):
                for before in befores:
                    before()
                response = flask.Response(b"{}", content_type="application/json")
                for after in afters:
                    response = after(response)
            runs.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(runs)


def hook_cost(app: flask.Flask, calls: int = 20000) -> float:
    """µs of ``observe_verification`` alone (what the verify view calls), median of 7."""
    from flask_licensechain.api.verification import Decision
    from flask_licensechain.monitoring.signals import observe_verification

    state = get_state(app)
    decision = Decision(None, "ACTIVE", license_id="lic_bench", app_id="app_bench")
    runs = []
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.10"}):
        for _ in range(7):
            start = time.process_time()
            for _ in range(calls):
                observe_verification(state, decision)  # type: ignore[arg-type]
            runs.append((time.process_time() - start) / calls * 1e6)
    monitoring = state.monitoring
    if monitoring is not None and monitoring.signals is not None:
        monitoring.signals.flush()
    return statistics.median(runs)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        off, keys = build("off", instance, None, OFF)
        configs: dict[str, dict[str, Any]] = {
            "default": {},
            "metrics": METRICS,
        }
        if args.redis:
            configs["metrics+redis"] = {**METRICS, "LICENSECHAIN_SIGNALS_STORAGE_URL": args.redis}
        configs["all+log"] = {**METRICS, "LICENSECHAIN_ACCESS_LOG": True}
        logger = logging.getLogger(access_log.LOGGER_NAME)
        logger.addHandler(logging.NullHandler())  # format nothing: measure our side
        apps = {"off": off}
        for name, config in configs.items():
            apps[name] = build(name, instance, keys, config)[0]
        setups = {name: caller(app, keys) for name, app in apps.items()}
        medians = measure(setups, args.calls, args.rounds)
        hooks = {name: hook_cost(apps[name]) for name in ("off", "default", "metrics")}
        request_hooks = {name: request_hooks_cost(app) for name, app in apps.items()}
        for app in apps.values():
            monitoring = get_state(app).monitoring
            if monitoring is not None and monitoring.signals is not None:
                monitoring.signals.close()
        mode = (
            "multiprocess (PROMETHEUS_MULTIPROC_DIR)"
            if "PROMETHEUS_MULTIPROC_DIR" in os.environ
            else "single process"
        )
        print(f"\nverify, {args.calls} calls x {args.rounds} rounds, median CPU µs/verify")
        print(f"metrics: {mode}")
        base = medians["off"]
        for name, value in medians.items():
            print(f"  {name:<14} {value:8.1f} µs   x{value / base:.3f}   (+{value - base:6.1f} µs)")
        print("the verify view's monitoring call alone (observe_verification), µs/call:")
        for name, value in hooks.items():
            print(f"  {name:<14} {value:8.2f} µs")
        print("the app's request hooks alone (before/after_request, a Response made), µs/request:")
        for name, value in request_hooks.items():
            print(f"  {name:<14} {value:8.2f} µs   (+{value - request_hooks['off']:6.2f} µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--redis", default=None, help="also count the signals in this Redis")
    parser.add_argument("--multiproc", action="store_true", help="repeat in multiprocess mode")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    run(args)
    if args.multiproc and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        with tempfile.TemporaryDirectory() as directory:
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
            command = [
                sys.executable,
                __file__,
                "--calls",
                str(args.calls),
                "--rounds",
                str(args.rounds),
            ]
            if args.redis:
                command += ["--redis", args.redis]
            subprocess.run(command, env=env, check=True)


if __name__ == "__main__":
    main()
