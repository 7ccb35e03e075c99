"""Per-request overhead of ``LicenseGate`` around a hello-world WSGI app, in one run.

Setups, measured interleaved in rounds so that machine noise hits all of them alike:

* ``bare``: the hello-world app called directly;
* ``gated``: the same app behind ``LicenseGate`` with a warm token (a verifier
  cache hit) on a rule that needs a feature: path normalisation, header hygiene,
  rule match, token check, identity headers and token stripping all run;
* ``gated+denylist``: the same with an in-memory denylist checked on every hit;
* ``gated+ratelimit``: the same with a ``memory://`` sliding-window-counter limit per license;
* ``public``: a public path without a token (the gateway's pure-proxy case).

Each call gets a fresh copy of one environ (the gate edits the environ), for
every setup alike. The overhead is the per-request time minus ``bare``'s; the
target is at most 10 µs for ``gated``.

    .venv/bin/python benchmarks/middleware_inprocess/run.py [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import jwt
from licensechain_middleware import GateConfig, LicenseGate, Rule

from flask_licensechain.core.contract import ALGORITHM, build_claims
from flask_licensechain.core.keys import SigningKey

ISSUER = "https://licenses.bench.test"
AUDIENCE = "app_bench"
TARGET_US = 10.0

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def environ_for(path: str, token: str | None) -> dict[str, Any]:
    """A typical environ of a gunicorn request from a browser-like client."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "page=2",
        "RAW_URI": path + "?page=2",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50123",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = "Bearer " + token
    return environ


def per_request_ns(app: WSGIApp, template: dict[str, Any], requests: int) -> float:
    """CPU time of this process per request: on a shared machine, time spent waiting
    for a core is not counted (wall-clock time is, and would swamp a few µs)."""
    copy = template.copy
    started = time.process_time_ns()
    for _ in range(requests):
        for _chunk in app(copy(), start_response):
            pass
    return (time.process_time_ns() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    key = SigningKey.generate()
    claims = build_claims(
        issuer=ISSUER,
        license_id="lic_bench",
        app_id=AUDIENCE,
        seller_tier="business",
        plan="business",
        features=["export", "reports"],
        license_exp=None,
        hw_bound=False,
        now=int(time.time()),
    )
    token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
    rules = (
        Rule("/health", public=True),
        Rule("/public/**", public=True),
        Rule("/admin/**", methods=("POST", "DELETE"), features=("admin",)),
        Rule("/reports/**", features=("export",)),
    )
    base = {"issuer": ISSUER, "audience": AUDIENCE, "jwks": {"keys": [key.jwk()]}, "rules": rules}
    # A limit never reached, so every request is counted and allowed; the sliding-window
    # counter keeps two counters per key (the moving window keeps one entry per hit).
    limited = (Rule("/reports/**", features=("export",), rate_limit="1000000000/minute"),)
    setups: dict[str, tuple[WSGIApp, dict[str, Any]]] = {
        "bare": (hello, environ_for("/reports/monthly", token)),
        "gated": (LicenseGate(hello, GateConfig(**base)), environ_for("/reports/monthly", token)),
        "gated+denylist": (
            LicenseGate(hello, GateConfig(**base, denylist_url="memory://")),
            environ_for("/reports/monthly", token),
        ),
        "gated+ratelimit": (
            LicenseGate(
                hello,
                GateConfig(
                    **{**base, "rules": limited}, ratelimit_strategy="sliding-window-counter"
                ),
            ),
            environ_for("/reports/monthly", token),
        ),
        "public": (LicenseGate(hello, GateConfig(**base)), environ_for("/public/page", None)),
    }
    # sanity: every gated setup really lets the request through, with the identity set
    for name, (app, template) in setups.items():
        env = template.copy()
        body = b"".join(app(env, start_response))
        assert body == b"hello", name
        if name.startswith("gated"):
            assert env["HTTP_X_LICENSE_SUBJECT"] == "lic_bench", name
            assert "HTTP_AUTHORIZATION" not in env, name

    samples: dict[str, list[float]] = {name: [] for name in setups}
    for app, template in setups.values():  # warm-up
        per_request_ns(app, template, args.requests // 10)
    for _ in range(args.rounds):
        for name, (app, template) in setups.items():
            samples[name].append(per_request_ns(app, template, args.requests))

    best = {name: min(values) for name, values in samples.items()}
    median = {name: statistics.median(values) for name, values in samples.items()}
    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "per_request_us": {n: round(v / 1000, 3) for n, v in median.items()},
        "overhead_us_median": {
            n: round((median[n] - median["bare"]) / 1000, 3) for n in setups if n != "bare"
        },
        "overhead_us_best": {
            n: round((best[n] - best["bare"]) / 1000, 3) for n in setups if n != "bare"
        },
        "target_us": TARGET_US,
    }
    result["meets_target"] = result["overhead_us_median"]["gated"] <= TARGET_US
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Python {result['python']} on {result['machine']}, "
          f"{args.rounds} rounds x {args.requests} requests (median of rounds)\n")  # fmt: skip
    print(f"{'setup':<18}{'per request':>14}{'overhead':>12}{'best':>10}")
    for name in setups:
        per = median[name] / 1000
        if name == "bare":
            print(f"{name:<18}{per:>11.3f} µs{'-':>12}{'-':>10}")
            continue
        over = result["overhead_us_median"][name]
        low = result["overhead_us_best"][name]
        print(f"{name:<18}{per:>11.3f} µs{over:>9.3f} µs{low:>7.3f} µs")
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"\ngated overhead {result['overhead_us_median']['gated']:.3f} µs: "
          f"{verdict} the {TARGET_US:.0f} µs target")  # fmt: skip


if __name__ == "__main__":
    main()
