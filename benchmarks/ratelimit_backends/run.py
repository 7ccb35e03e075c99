"""The public endpoints' rate limits: ``limits`` directly (the default) vs the host app's
Flask-Limiter (``LICENSECHAIN_RATELIMIT_BACKEND = "flask-limiter"``), on ``POST
/v1/licenses/verify`` end to end, side by side in one run.

Rows, each an issuer app on its own SQLite store with the same 100 licenses (hardware ids
bound), called through its WSGI callable with prebuilt environs (``verify_endpoint/run.py``'s
caller):
- *no limits*: ``ratelimit_enabled=False``, the endpoint without any counting;
- *limits (default)*: per IP and per key, the default three windows each;
- *flask-limiter*: the same limits declared on the host's ``Limiter``, its storage;
each on ``memory://``, and with ``--redis URL`` on Redis too (unique key prefixes; the keys
are left to expire). Limits are the defaults' shapes with huge amounts, so no request is
refused; every answer is checked ``valid: true`` after the timing.

    .venv/bin/python benchmarks/ratelimit_backends/run.py [--calls 1000] [--rounds 7]
        [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
from flask_limiter import Limiter

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.client_ip import client_ip

HERE = Path(__file__).resolve().parent
LICENSES = 100
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
ISSUER = "https://licenses.example.test/v1"
#: the default limits' shape (three windows), amounts no benchmark reaches
HUGE = "100000000/second;100000000/minute;100000000/hour"


def _verify_endpoint_module() -> ModuleType:
    path = HERE.parent / "verify_endpoint" / "run.py"
    spec = importlib.util.spec_from_file_location("bench_verify_endpoint", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Row:
    name: str
    call: Callable[[int], bytes]
    times: list[float]  # wall µs per request, one per round
    cpu: list[float]  # this process's CPU µs per request, one per round


def build(
    name: str, instance: Path, backend: str | None, storage: str, caller: Any
) -> tuple[Row, flask.Flask]:
    """An issuer app; ``backend`` None: no rate limits."""
    instance.mkdir(parents=True, exist_ok=True)
    app = flask.Flask(f"bench_{name}", instance_path=str(instance))
    options: dict[str, Any] = {
        "database_url": f"sqlite:///{instance / 'bench.db'}",
        "encryption_key": ENCRYPTION_KEY,
        "issuer": ISSUER,
        "ratelimit_enabled": backend is not None,
        "ratelimit_per_ip": HUGE,
        "ratelimit_per_key": HUGE,
    }
    prefix = "lcbench" + secrets.token_hex(4)
    if backend == "flask-limiter":
        Limiter(client_ip, app=app, storage_uri=storage, key_prefix=prefix)
        options["ratelimit_backend"] = backend
    elif backend == "limits":
        # our counters carry no run prefix: a fresh Redis db number would be cleaner, but the
        # shared server's keys must not be flushed; the huge amounts keep old counts harmless
        options["ratelimit_storage_url"] = storage
    LicenseChain(app, **options)
    store = get_state(app).store
    assert store is not None
    seller = store.apps.create("Bench", tier="pro")
    keys = [
        store.licenses.create(seller.id, plan="pro", features=["export"], max_devices=3).key
        for _ in range(LICENSES)
    ]
    bodies = [
        json.dumps({"key": key, "hwuid": f"machine-{n}"}).encode() for n, key in enumerate(keys)
    ]
    call = caller(app, "/v1/licenses/verify", bodies)
    for i in range(LICENSES):  # bind every hardware id before the timing
        call(i)
    return Row(name, call, [], []), app


def run_round(row: Row, calls: int) -> None:
    answers = []
    start, start_cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        answers.append(row.call(i))
    row.cpu.append((time.process_time() - start_cpu) / calls * 1e6)
    row.times.append((time.perf_counter() - start) / calls * 1e6)
    for data in answers[:: max(1, calls // 20)]:
        assert json.loads(data)["valid"] is True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis", default=None, help="also on this Redis (e.g. redis://...)")
    args = parser.parse_args()
    caller = _verify_endpoint_module().WsgiCaller
    storages = ["memory://"] + ([args.redis] if args.redis else [])
    with tempfile.TemporaryDirectory() as tmp:
        rows: list[Row] = []
        apps = []
        base, app = build("no limits", Path(tmp) / "none", None, "memory://", caller)
        rows.append(base)
        apps.append(app)
        for storage in storages:
            where = storage.split("://")[0]
            for backend in ("limits", "flask-limiter"):
                label = f"{backend} ({where})"
                instance = Path(tmp) / f"{backend}-{where}"
                row, app = build(label, instance, backend, storage, caller)
                rows.append(row)
                apps.append(app)
        for _ in range(args.rounds):  # interleaved: noise hits every row alike
            for row in rows:
                run_round(row, args.calls)
        for app in apps:
            store = get_state(app).store
            assert store is not None
            store.dispose()
    report(rows, args)


def report(rows: list[Row], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Python {platform.python_version()}, Flask {version('flask')}, "
        f"Flask-Limiter {version('flask-limiter')}, limits {version('limits')}; "
        f"{args.calls} calls x {args.rounds} rounds; load average {load:.1f}\n"
    )
    base, base_cpu = min(rows[0].times), min(rows[0].cpu)
    print("| row | wall µs/request, best (median) | CPU µs/request, best | counting's CPU cost |")
    print("|---|---|---|---|")
    costs: dict[str, float] = {}
    for row in rows:
        cpu = min(row.cpu)
        costs[row.name] = cpu - base_cpu
        cost = "—" if row is rows[0] else f"{cpu - base_cpu:.1f} µs"
        wall = f"{min(row.times):.1f} ({statistics.median(row.times):.1f})"
        print(f"| {row.name} | {wall} | {cpu:.1f} | {cost} |")
    print()
    for where in sorted({name.split("(")[1].rstrip(")") for name in costs if "(" in name}):
        ours, theirs = costs[f"limits ({where})"], costs[f"flask-limiter ({where})"]
        whole = (base_cpu + theirs) / (base_cpu + ours)
        print(
            f"- {where}: Flask-Limiter's counting costs {theirs / ours:.2f}x ours in CPU "
            f"({theirs:.1f} vs {ours:.1f} µs per request); the whole request {whole:.2f}x"
        )
    print(f"- no limits: {base:.1f} µs wall, {base_cpu:.1f} µs CPU per request")


if __name__ == "__main__":
    main()
