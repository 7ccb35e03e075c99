"""``POST /v1/licenses/verify`` end to end through the WSGI app, in-process, vs one RSA signature.

Side by side, in one run:
- *floor*: one RSA-2048 PKCS#1 v1.5 SHA-256 signature with ``cryptography``, on the issuer's
  active signing key, over a real token's signing input;
- *verify on SQLite* and *verify on PostgreSQL*: the Flask app's WSGI callable called directly
  with a prebuilt environ (no test client): routing, JSON body, the store lookup (license,
  app, devices), the hardware-id check, the claims, one RS256 signature, the JSON answer;
- the same verify with the store's two hot-path reads through SQLAlchemy's ``Connection``
  instead of the driver's cursor, to measure what that bypass saves of the whole request;
- and, to show where the time goes, the parts alone: PyJWT's encode of the claims (the
  signature included), the store's verification decision, and a do-nothing JSON route on
  the same Flask app (the framework's own cost per request).

Every verify issues a fresh token: all jtis are collected and checked unique, and every
answer is checked ``valid: true`` after the timing. Rate limits are disabled
(``ratelimit_enabled=False``): the benchmark sends thousands of requests for a hundred keys
from one address, which the default limits would refuse.

    .venv/bin/python benchmarks/verify_endpoint/run.py [--calls 1000] [--rounds 10]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--profile sqlite|postgres]
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import flask
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.api.verification import decide
from flask_licensechain.core.contract import build_claims

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import add_postgres, postgres_database

LICENSES = 100
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
ISSUER = "https://licenses.example.test/v1"
VERIFY_PATH = "/v1/licenses/verify"
NOOP_PATH = "/bench/noop"
PUBLIC_PATH = "SQLAlchemy Connection (no cursor bypass),"


class WsgiCaller:
    """Calls an app's WSGI callable with prebuilt environs, as a server would."""

    def __init__(self, app: flask.Flask, path: str, bodies: list[bytes]) -> None:
        self.app = app
        self.bodies = bodies
        self.environs = [_environ(path, body) for body in bodies]

    def __call__(self, i: int) -> bytes:
        k = i % len(self.bodies)
        environ = dict(self.environs[k])
        environ["wsgi.input"] = io.BytesIO(self.bodies[k])
        status: list[str] = []

        def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
            status.append(s)

        result = self.app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not status[0].startswith("200"):
            raise RuntimeError(f"{status[0]} {data[:200]!r}")
        return data


def _environ(path: str, body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:5000",
        "HTTP_USER_AGENT": "bench/1.0",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


@dataclass
class Issuer:
    """One issuer app on one store, with its licenses and prebuilt requests."""

    name: str
    app: flask.Flask
    keys: list[str]
    verify: WsgiCaller = field(init=False)

    def __post_init__(self) -> None:
        bodies = [
            json.dumps({"key": key, "hwuid": f"machine-{n}"}).encode()
            for n, key in enumerate(self.keys)
        ]
        self.verify = WsgiCaller(self.app, VERIFY_PATH, bodies)

    def decide(self) -> Callable[[int], Any]:
        store = get_state(self.app).store
        assert store is not None
        licenses, keys = store.licenses, self.keys

        def call(i: int) -> Any:
            n = i % len(keys)
            return decide(
                licenses, keys[n], app_id=None, hwuid=f"machine-{n}", now=datetime.now(UTC)
            )

        return call

    def close(self) -> None:
        store = get_state(self.app).store
        assert store is not None
        store.dispose()


def build_issuer(name: str, database_url: str, instance: Path, *, bypass: bool = True) -> Issuer:
    """``bypass=False``: the store's hot-path reads go through SQLAlchemy's ``Connection``
    instead of the driver's cursor (``flask_licensechain/store/fastpath.py``)."""
    app = flask.Flask(f"bench_{name.replace(' ', '_')}", instance_path=str(instance))
    LicenseChain(
        app,
        database_url=database_url,
        encryption_key=ENCRYPTION_KEY,
        issuer=ISSUER,
        ratelimit_enabled=False,  # see the module doc
    )

    @app.post(NOOP_PATH)
    def noop() -> Any:  # the framework's own cost: parse the JSON body, answer JSON
        return {"ok": bool(flask.request.get_json())}

    store = get_state(app).store
    assert store is not None
    store.licenses.bypass_core = bypass
    seller = store.apps.create("Bench", tier="pro")
    keys = [
        store.licenses.create(seller.id, plan="pro", features=["export", "sync"], max_devices=3).key
        for _ in range(LICENSES)
    ]
    issuer = Issuer(name, app, keys)
    for i in range(LICENSES):  # binds each hwuid: the timed calls see known devices
        issuer.verify(i)
    return issuer


def floor_call(issuer: Issuer) -> Callable[[int], bytes]:
    """One bare RS256 signature over a real token's signing input, on the same key."""
    keyring = get_state(issuer.app).keyring
    assert keyring is not None
    key = keyring.active_key().private_key
    token = json.loads(issuer.verify(0))["license_token"]
    signing_input = token.rsplit(".", 1)[0].encode()
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return lambda _: key.sign(signing_input, pkcs1, sha256)


def pyjwt_encode_call(issuer: Issuer) -> Callable[[int], str]:
    """The issuer's signing step alone: fresh claims, PyJWT encode, the RSA signature."""
    keyring = get_state(issuer.app).keyring
    assert keyring is not None

    def call(_: int) -> str:
        claims = build_claims(
            issuer=ISSUER,
            license_id="lic_0123456789abcdef01234567",
            app_id="app_0123456789abcdef01234567",
            seller_tier="pro",
            plan="pro",
            features=("export", "sync"),
            license_exp=None,
            hw_bound=True,
            now=int(time.time()),
        )
        return keyring.sign(claims)

    return call


@dataclass
class Timing:
    wall_us: float
    cpu_us: float


@dataclass
class Row:
    label: str
    fn: Callable[[int], Any]
    verify_of: str | None = None  # the store name when this row is a full verify
    answers: list[bytes] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)

    def run(self, calls: int) -> None:
        fn = self.fn
        sink = self.answers.append if self.verify_of else None
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        if sink is None:
            for i in range(calls):
                fn(i)
        else:
            for i in range(calls):
                sink(fn(i))
        wall = time.perf_counter() - start_wall
        cpu = time.process_time() - start_cpu
        self.timings.append(Timing(wall / calls * 1e6, cpu / calls * 1e6))

    @property
    def best(self) -> Timing:
        return min(self.timings, key=lambda t: t.wall_us)


def check_answers(row: Row) -> int:
    """Every answer valid, every token a new jti. Returns the number of tokens checked."""
    jtis = set()
    for raw in row.answers:
        body = json.loads(raw)
        assert body["valid"] is True, (row.label, body)
        jtis.add(jwt.decode(body["license_token"], options={"verify_signature": False})["jti"])
    assert len(jtis) == len(row.answers), f"{row.label}: {len(row.answers) - len(jtis)} reused"
    return len(jtis)


def profile(issuer: Issuer, calls: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        issuer.verify(i)
    profiler.disable()
    print(f"\n## Profile: verify on {issuer.name}, {calls} calls\n\n```")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)
    print("```")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per round and row")
    parser.add_argument("--rounds", type=int, default=10, help="best of this many rounds")
    add_postgres(parser)
    parser.add_argument("--profile", choices=["sqlite", "postgres"], default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, postgres_database(args.postgres) as pg_url:
        issuers = [build_issuer("SQLite", f"sqlite:///{tmp}/bench.db", Path(tmp) / "sqlite")]
        if pg_url is not None:
            issuers.append(build_issuer("PostgreSQL", pg_url, Path(tmp) / "pg"))
        sqlite = issuers[0]
        # The same requests with the store's reads through SQLAlchemy's Connection.
        public = [
            build_issuer(
                f"{PUBLIC_PATH} {i.name}",
                f"sqlite:///{tmp}/bench-core.db" if i is sqlite else str(pg_url),
                Path(tmp) / f"core-{n}",
                bypass=False,
            )
            for n, i in enumerate(issuers)
        ]
        rows = [
            Row("RSA-2048 PKCS#1 v1.5 SHA-256 sign (floor)", floor_call(sqlite)),
            *(Row(f"**verify on {i.name}**", i.verify, verify_of=i.name) for i in issuers),
            *(Row(f"verify on {i.name}", i.verify, verify_of=i.name) for i in public),
            Row("part: PyJWT encode of the claims, signature included", pyjwt_encode_call(sqlite)),
            *(Row(f"part: store decision (decide) on {i.name}", i.decide()) for i in issuers),
            Row(
                "part: do-nothing JSON route, same app",
                WsgiCaller(sqlite.app, NOOP_PATH, [b'{"key": "LC-AAAAAA-BBBBBB-CCCCCC"}']),
            ),
        ]
        # Rounds interleave the rows, so machine noise hits all alike; the best round counts.
        for _ in range(args.rounds):
            for row in rows:
                row.run(args.calls)
        checked = {row.verify_of: check_answers(row) for row in rows if row.verify_of}
        report(args, rows, checked)
        if args.profile:
            for issuer in issuers:
                if issuer.name.lower().startswith(args.profile[:4]):
                    profile(issuer, args.calls)
        for issuer in issuers + public:
            issuer.close()


def report(args: argparse.Namespace, rows: list[Row], checked: dict[str | None, int]) -> None:
    floor = rows[0].best
    load = os.getloadavg()[0]
    print(
        f"# POST /v1/licenses/verify, in-process WSGI ({args.calls} calls x {args.rounds} "
        "rounds, best round)\n"
    )
    print(
        f"Python {platform.python_version()}, Flask {version('flask')}, "
        f"cryptography {version('cryptography')}, PyJWT {version('pyjwt')}, "
        f"SQLAlchemy {version('sqlalchemy')}; {os.cpu_count()} cores, load average "
        f"{load:.1f} at the end; rate limits disabled.\n"
    )
    print("| what | µs/op (wall) | µs/op (CPU, this process) | requests/s per core | / floor |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        t = row.best
        per_core = f"{1e6 / t.wall_us:,.0f}" if row.verify_of or row is rows[0] else ""
        print(
            f"| {row.label} | {t.wall_us:.1f} | {t.cpu_us:.1f} | {per_core} | "
            f"{t.wall_us / floor.wall_us:.2f}x |"
        )
    print()
    by_store = {row.verify_of: row for row in rows if row.verify_of}
    for name, row in by_store.items():
        if name is None or not name.startswith(PUBLIC_PATH):
            continue
        bypassed = by_store[name.removeprefix(PUBLIC_PATH).strip()].best
        without = row.best
        saved_wall = without.wall_us - bypassed.wall_us
        saved_cpu = without.cpu_us - bypassed.cpu_us
        print(
            f"- cursor bypass on {name.removeprefix(PUBLIC_PATH).strip()}: saves "
            f"{saved_wall:.0f} µs wall of {without.wall_us:.0f} µs "
            f"({saved_wall / without.wall_us:.0%} of the request without it), "
            f"{saved_cpu:.0f} µs CPU of {without.cpu_us:.0f} µs ({saved_cpu / without.cpu_us:.0%})"
        )
    for row in rows:
        if not row.verify_of or row.verify_of.startswith(PUBLIC_PATH):
            continue
        ratio = row.best.wall_us / floor.wall_us
        verdict = "MET" if ratio <= 2.0 else "MISSED"
        aim = "met" if ratio <= 1.5 else "not met"
        print(
            f"- verify on {row.verify_of}: {ratio:.2f}x the floor (target <= 2x: {verdict}; "
            f"aim 1.5x: {aim}); {checked[row.verify_of]:,} tokens checked: all valid, "
            "all jtis unique"
        )
    print(
        "\nrequests/s per core = 1e6 / wall µs: one process, one request at a time. On "
        "PostgreSQL part of each request runs in the server process (the wall time counts it; "
        "the CPU column does not)."
    )


if __name__ == "__main__":
    main()
