"""What checking an API key costs an admin request, side by side.

One issuer app in this process, one license; ``GET /v1/licenses/<id>`` is called straight
through the WSGI app (no HTTP, no test client) with three ways of checking the key:

- *no check*: the view runs with the key already known (``authenticate`` replaced): the
  floor of the request without any key check;
- *main's check*: what ``main`` did before issue 11 (one ``SELECT`` by hash, compare,
  revoked?, scope), reproduced here;
- *this branch, Core path*: the same with the lookup through SQLAlchemy's ``Connection``
  (``ApiKeyRepository.bypass_core = False``), to show what the ``FastQuery`` bypass saves;
- *this branch*: the real ``api.auth.authenticate``: the failure-limit test of the client IP
  (``memory://`` storage), one ``SELECT`` by current or previous hash, revoked / expired /
  rotated, the usage counted in memory (written in batches by a timer), the scope; the key
  is app-limited and expires, so the view's tenancy check runs its app-set and mode test.

Rounds are interleaved; each figure is the median of the rounds, in µs per request (wall
time and this process's CPU time). Also the pieces alone. SQLite (a file, WAL), and
PostgreSQL when reachable.

    .venv/bin/python benchmarks/api_key_check/run.py [--requests 2000] [--rounds 7] [--postgres URL]
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, g
from werkzeug.test import EnvironBuilder

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.api import auth
from flask_licensechain.core.errors import InsufficientScope
from flask_licensechain.roles import grants
from flask_licensechain.state import IssuerState
from flask_licensechain.store.api_keys import ApiKeyRepository, _record, hash_api_key
from flask_licensechain.store.schema import api_keys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import add_postgres, add_rounds, create_database

_G_KEY = "_licensechain_api_key"
_MAIN_BY_HASH = sa.select(api_keys).where(api_keys.c.key_hash == sa.bindparam("key_hash"))


def mains_check(state: IssuerState, scope: str) -> Any:
    """``main``'s ``authenticate`` before issue 11, minus its once-a-minute write."""
    plaintext = auth.presented_key()
    presented = hash_api_key(plaintext)
    with state.store.database.single() as conn:
        row = conn.execute(_MAIN_BY_HASH, {"key_hash": presented}).first()
    if row is None or not hmac.compare_digest(row.key_hash, presented) or row.revoked_at:
        raise auth.InvalidApiKey()
    key = _record(row)
    if not grants(key.scopes, scope):
        raise InsufficientScope()
    setattr(g, _G_KEY, key)
    return key


@contextmanager
def checking(kind: str, key: Any) -> Iterator[None]:
    real = auth.authenticate

    def known(state: IssuerState, scope: str) -> Any:
        setattr(g, _G_KEY, key)
        return key

    auth.authenticate = {"no check": known, "main's check": mains_check}.get(kind, real)  # type: ignore[assignment]
    ApiKeyRepository.bypass_core = kind != "this, Core path"
    try:
        yield
    finally:
        auth.authenticate = real  # type: ignore[assignment]
        ApiKeyRepository.bypass_core = True


def per_request_us(app: Flask, environ: dict[str, Any], count: int) -> tuple[float, float]:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        assert status.startswith("200"), status

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        body = app(dict(environ), start_response)
        for _chunk in body:
            pass
    return (
        (time.perf_counter() - wall) / count * 1e6,
        (time.process_time() - cpu) / count * 1e6,
    )


def per_call_us(fn: Callable[[], Any], count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        fn()
    return (time.process_time() - start) / count * 1e6


def measure(database_url: str, instance: Path, requests: int, rounds: int) -> None:
    app = Flask("api_key_bench", instance_path=str(instance))
    app.testing = True
    LicenseChain(
        app,
        database_url=database_url,
        encryption_key=secrets.token_hex(32),
        ratelimit_enabled=True,  # the failure limit runs, on memory://
        ratelimit_per_ip="1000000000/second",
    )
    state = get_state(app)
    assert isinstance(state, IssuerState)
    store = state.store
    readers = {}
    for bypass in (True, False):
        ApiKeyRepository.bypass_core = bypass
        store.api_keys._readers = None
        readers[bypass] = store.api_keys._hash_readers()
    ApiKeyRepository.bypass_core = True
    lic_app = store.apps.create("Bench")
    lic = store.licenses.create(lic_app.id, plan="pro")
    record, secret = store.api_keys.create(
        "bench",
        ["licenses:read"],
        app_ids=[lic_app.id],
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    environ = EnvironBuilder(
        path=f"/v1/licenses/{lic.id}",
        headers={"Authorization": f"Bearer {secret}"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    ).get_environ()
    kinds = ["no check", "main's check", "this, Core path", "this branch"]
    walls: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    for kind in kinds:  # warm up
        with checking(kind, record):
            store.api_keys._readers = readers[ApiKeyRepository.bypass_core]
            per_request_us(app, environ, 200)
    for _ in range(rounds):
        for kind in kinds:
            with checking(kind, record):
                store.api_keys._readers = readers[ApiKeyRepository.bypass_core]
                wall, cpu = per_request_us(app, environ, requests)
            walls[kind].append(wall)
            cpus[kind].append(cpu)
    print(f"\n## {store.backend}: GET /v1/licenses/<id>, µs per request (median of {rounds})")
    print(f"{'key check':<14} {'wall':>8} {'cpu':>8} {'+wall':>8} {'+cpu':>8}")
    base_wall = statistics.median(walls["no check"])
    base_cpu = statistics.median(cpus["no check"])
    for kind in kinds:
        wall, cpu = statistics.median(walls[kind]), statistics.median(cpus[kind])
        print(f"{kind:<14} {wall:8.1f} {cpu:8.1f} {wall - base_wall:+8.1f} {cpu - base_cpu:+8.1f}")
    main_wall = statistics.median(walls["main's check"])
    main_cpu = statistics.median(cpus["main's check"])
    ours_wall = statistics.median(walls["this branch"])
    ours_cpu = statistics.median(cpus["this branch"])
    print(
        f"this branch vs main's check: {ours_wall - main_wall:+.1f} µs wall, "
        f"{ours_cpu - main_cpu:+.1f} µs CPU (ratio {ours_wall / main_wall:.3f} wall, "
        f"{ours_cpu / main_cpu:.3f} CPU); target: at most +50 µs"
    )
    core_cpu = statistics.median(cpus["this, Core path"])
    print(
        f"the FastQuery bypass saves {core_cpu - ours_cpu:.1f} µs CPU per request, "
        f"{(core_cpu - ours_cpu) / core_cpu * 100:.0f}% of the request on the Core path"
    )
    print(
        f"the whole check vs none: {ours_wall - base_wall:+.1f} µs wall "
        f"(ratio {ours_wall / base_wall:.3f}), {ours_cpu - base_cpu:+.1f} µs CPU"
    )

    # The pieces alone (CPU µs per call, best of the rounds).
    now = datetime.now(UTC)
    failures = state.limiter.auth_failures
    assert failures is not None
    presented = hash_api_key(secret)

    def main_lookup() -> None:
        with store.database.single() as conn:
            conn.execute(_MAIN_BY_HASH, {"key_hash": presented}).first()

    store.api_keys._readers = readers[True]
    pieces: dict[str, Callable[[], Any]] = {
        "SELECT by hash (main, Core path)": main_lookup,
        "check(): SELECT by hash (FastQuery), expiry, revoked, rotated": lambda: (
            store.api_keys.check(secret, now)
        ),
        "usage.record (in memory)": lambda: store.api_keys.usage.record(record.id, now, "1.2.3.4"),
        "failure limit test (memory://)": lambda: failures.check("127.0.0.1"),
        "app mode lookup (remembered)": lambda: store.apps.mode_of(lic_app.id),
    }
    print("\npieces, CPU µs per call (best of the rounds):")
    for name, fn in pieces.items():
        best = min(per_call_us(fn, requests) for _ in range(rounds))
        print(f"  {best:8.2f}  {name}")
    store.api_keys.usage.flush()
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    add_rounds(parser, 7)
    add_postgres(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        measure(sqlite_url, Path(tmp) / "a", args.requests, args.rounds)
        database = create_database(args.postgres) if args.postgres else None
        if database is None:
            print("\n(PostgreSQL not reachable: skipped)")
            return
        url, drop = database
        try:
            measure(url, Path(tmp) / "b", args.requests, args.rounds)
        finally:
            drop()


if __name__ == "__main__":
    main()
