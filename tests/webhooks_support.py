"""Helpers of the webhook tests: a socket guard, a stubbed resolver, receivers (in a thread,
or a real process verifying with the ``standardwebhooks`` library), and worker processes.

Run as a script it is the receiver process::

    python tests/webhooks_support.py --port P --secret whsec_... --out FILE
        [--fail-first N] [--hang-first] [--delay SECONDS]

Each verified delivery is appended to FILE as one JSON line ``{"id", "type", "data",
"signatures"}``; a delivery that does not verify gets 400 and a line ``{"invalid": ...}``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- the socket guard ----------------------------------------------------------------------


def _is_loopback(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: the guarded code must have resolved it already


@contextmanager
def socket_guard(strict: bool = True) -> Iterator[list[Any]]:
    """Every connection attempt to a non-loopback address is refused and recorded: the
    test fails if the list is not empty at the end (the guard asserts it, when ``strict``;
    otherwise it only refuses, for generated requests that may name any address)."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            attempts.append(address)
            raise ConnectionRefusedError(f"socket guard: no connection to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_loopback(address):
            attempts.append(address)
            raise ConnectionRefusedError(f"socket guard: no connection to {address!r}")
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
    if strict:
        assert attempts == [], f"connections attempted to non-loopback addresses: {attempts}"


def stub_resolver(names: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A resolver answering from ``names`` (an unknown name does not resolve)."""
    from flask_licensechain.webhooks.ssrf import DestinationRefused

    def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise DestinationRefused(f"{host} does not resolve (stub)")
        return list(names[host])

    return resolve


# -- an in-process receiver (a thread) -----------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class ThreadReceiver:
    """A loopback HTTP server recording every POST; ``statuses`` are answered in turn
    (then 200); ``delay`` seconds before each answer; ``redirect`` answers 302."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    body: bytes = b"ok"
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> ThreadReceiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                owner.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, data)
                )
                if owner.delay:
                    time.sleep(owner.delay)
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                try:
                    self.wfile.write(owner.body)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


# -- real processes ------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_port(port: int, timeout: float = 15.0) -> None:
    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(up, timeout, f"port {port}")


@dataclass
class ReceiverProcess:
    """This file run as a receiver process (see the module docstring)."""

    port: int
    secret: str
    out: Path
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> ReceiverProcess:
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--port",
                str(self.port),
                "--secret",
                self.secret,
                "--out",
                str(self.out),
                *self.extra,
            ],
        )
        wait_port(self.port)
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]


def worker_env(database_url: str, instance: Path, **settings: str) -> dict[str, str]:
    """The environment of a worker process (``flask licensechain webhooks run``)."""
    from issuer_support import TEST_ENCRYPTION_KEY

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "LICENSECHAIN_"))}
    env.update(
        ISSUER_INSTANCE_PATH=str(instance),
        LICENSECHAIN_DATABASE_URL=database_url,
        LICENSECHAIN_ISSUER="http://127.0.0.1/v1",
        LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE="true",
        LICENSECHAIN_WEBHOOKS_POLL_INTERVAL="0.1",
        # the code under test, whatever the virtualenv has installed
        PYTHONPATH=os.pathsep.join([str(HERE / "interop"), str(ROOT), str(ROOT / "middleware")]),
    )
    if not database_url.startswith("sqlite"):
        env["LICENSECHAIN_ENCRYPTION_KEY"] = TEST_ENCRYPTION_KEY
    env.update({f"LICENSECHAIN_{k.upper()}": v for k, v in settings.items()})
    return env


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "issuer_app:create_app",
            "licensechain",
            "webhooks",
            "run",
            "--json",
            *args,
        ],
        env=env,
        cwd=HERE / "interop",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[bytes, bytes]:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate(timeout=10)


# -- the receiver process ------------------------------------------------------------------


def _serve(
    port: int, secret: str, out: Path, fail_first: int, hang_first: bool, delay: float
) -> None:
    from standardwebhooks.webhooks import Webhook  # the library itself, not our helper

    hook = Webhook(secret)
    lock = threading.Lock()
    state = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with lock:
                state["requests"] += 1
                number = state["requests"]
            if hang_first and number == 1:
                with lock, out.open("a") as handle:
                    handle.write(json.dumps({"hanging": self.headers.get("webhook-id")}) + "\n")
                time.sleep(3600)
            started = time.time()
            if delay:
                time.sleep(delay)
            headers = {k: v for k, v in self.headers.items()}
            try:
                event = hook.verify(body, headers)
                line: dict[str, Any] = {
                    "id": self.headers["webhook-id"],
                    "type": event["type"],
                    "data": event["data"],
                    "signatures": len(self.headers["webhook-signature"].split(" ")),
                    "started": started,
                    "at": time.time(),
                }
                status = 500 if number <= fail_first else 200
                line["answered"] = status
            except Exception as exc:
                line, status = {"invalid": str(exc)}, 400
            with lock, out.open("a") as handle:
                handle.write(json.dumps(line) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--hang-first", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0)
    options = parser.parse_args()
    _serve(
        options.port,
        options.secret,
        options.out,
        options.fail_first,
        options.hang_first,
        options.delay,
    )
