"""What gating adds to the gateway's own CPU per request, without HTTP noise on the client side.

The WSGI gateway app (the same ``build_app`` the workers run) is called in-process, in a
loop, against a real upstream (nginx ``return 200`` on loopback, started here): a public
path (setup (b)) and a licensed path with a warm token (setup (c)), alternated over rounds.
The CPU time of this one process per request is reported (median over rounds).

    .venv/bin/python benchmarks/gateway/inprocess.py [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from string import Template
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from licensechain_middleware.gateway.config import config_from_document
from licensechain_middleware.gateway.wsgi import build_app
from run import AUDIENCE, HERE, ISSUER, free_port, make_token, process, wait_for


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="'' for none")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lc-gw-inproc-"))
    try:
        upstream_port, proxy_port = free_port(), free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(
            Template((HERE / "nginx.conf.template").read_text()).substitute(
                WORKDIR=workdir, UPSTREAM_PORT=upstream_port, PROXY_PORT=proxy_port
            )
        )
        jwks, token = make_token(workdir)
        document: dict[str, Any] = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_file": str(jwks),
            "rules": [
                {"path": "/public/**", "public": True},
                {"path": "/licensed/**", "features": ["reports"]},
            ],
            "gateway": {"upstream": f"http://127.0.0.1:{upstream_port}"},
        }
        if args.redis_url:
            document["denylist_url"] = args.redis_url
        with process(["nginx", "-p", str(workdir), "-c", str(conf)], workdir / "nginx.log"):
            wait_for(f"http://127.0.0.1:{upstream_port}/")
            measure(build_app(config_from_document(document, {})), token, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def measure(app: Any, token: str, args: argparse.Namespace) -> None:
    logging.getLogger("licensechain.gateway.access").handlers[0].setStream(open(os.devnull, "w"))

    def environ(path: str, authorization: str | None) -> dict[str, Any]:
        env = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "wsgi.input_terminated": True, "HTTP_HOST": "127.0.0.1:8080",
            "HTTP_USER_AGENT": "bench", "HTTP_ACCEPT": "*/*",
        }  # fmt: skip
        if authorization:
            env["HTTP_AUTHORIZATION"] = authorization
        return env

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        assert status.startswith("200"), status

    def one(path: str, authorization: str | None) -> None:
        body = app(environ(path, authorization), start_response)
        with contextlib.closing(body):
            for _ in body:
                pass

    setups = {"b": ("/public/hello", None), "c": ("/licensed/hello", f"Bearer {token}")}
    for path, auth in setups.values():
        for _ in range(300):
            one(path, auth)
    cpu: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, (path, auth) in setups.items():
            started = time.process_time()
            for _ in range(args.requests):
                one(path, auth)
            cpu[name].append((time.process_time() - started) * 1e6 / args.requests)
    b, c = statistics.median(cpu["b"]), statistics.median(cpu["c"])
    print(f"gateway app in-process, {args.rounds} rounds x {args.requests} requests, medians:")
    print(f"(b) pure proxy        {b:7.1f} us CPU/request")
    print(f"(c) gating, warm      {c:7.1f} us CPU/request")
    print(f"(c) - (b)             {c - b:7.1f} us;  (c)/(b) capacity = {b / c:.3f}")
    print(f"denylist: {args.redis_url or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
