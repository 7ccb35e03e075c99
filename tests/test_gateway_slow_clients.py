"""Clients that send their request slowly (slowloris) must not starve the gateway, and are
cut off after a bounded, configured time: a request body with 408, a request head by
closing the connection. Real gateway processes (gunicorn and uvicorn) and a real upstream."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support.conn import Closed, RawConnection
from gateway_support.gateway_config import write_config
from gateway_support.processes import Server, gateway_server, upstream_server
from gateway_support.tokens import TestIssuer

pytestmark = pytest.mark.slow

THREADS = 4
#: Four times as many slow connections as the gateway has threads.
SLOW_CONNECTIONS = 4 * THREADS
SLOW_POST = b"POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
SLOW_CHUNKED = b"POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    with upstream_server() as server:
        yield server


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("slow-issuer"))


def _gateway(
    directory: Path, upstream: Server, issuer: TestIssuer, server: str, extra: str
) -> contextlib.AbstractContextManager[Server]:
    config = write_config(
        directory,
        upstream=upstream.url,
        jwks_file=issuer.jwks_file,
        gateway=f"threads = {THREADS}\n{extra}",
    )
    return gateway_server(config, server=server, workers=1)


@contextlib.contextmanager
def _trickling(socks: list[socket.socket], piece: bytes) -> Iterator[None]:
    """Send ``piece`` on every socket every 0.25 s until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.25):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(piece)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _unanswered(sock: socket.socket) -> bool:
    """Still open and nothing received."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False  # an answer, or the connection closed


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_slow_bodies_do_not_starve_a_normal_request(
    tmp_path: Path, upstream: Server, issuer: TestIssuer, server: str
) -> None:
    # A long body deadline: the slow clients are all still sending when the normal
    # request is made, so it can only be answered if they do not hold the workers.
    with _gateway(tmp_path, upstream, issuer, server, "body_timeout = 120.0") as gateway:
        slow = [
            socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(SLOW_CONNECTIONS)
        ]
        try:
            for sock in slow:
                sock.sendall(SLOW_POST + b"x")
            with _trickling(slow, b"x"):
                answer = httpx.get(f"{gateway.url}/public/ok", timeout=20)
                assert answer.status_code == 200
                assert answer.json()["path"] == "/public/ok"
                assert all(_unanswered(sock) for sock in slow)
        finally:
            for sock in slow:
                sock.close()


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
@pytest.mark.parametrize(
    ("head", "piece"), [(SLOW_POST, b"x"), (SLOW_CHUNKED, b"1\r\nx\r\n")], ids=["length", "chunked"]
)
def test_a_slow_body_gets_408(
    tmp_path: Path,
    upstream: Server,
    issuer: TestIssuer,
    server: str,
    head: bytes,
    piece: bytes,
) -> None:
    extra = "body_timeout = 1.0\nbody_min_rate = 1024.0"
    with _gateway(tmp_path, upstream, issuer, server, extra) as gateway:
        with RawConnection(gateway.port, timeout=30) as conn:
            conn.send(head + piece)
            with _trickling([conn.sock], piece):
                answer = conn.read_response("POST")
        assert answer.status == 408, answer
        body = json.loads(answer.body)
        assert body["error"] == "request_timeout"
        assert body["request_id"]
        # A body that keeps up is never cut off, however long it takes in all.
        public = httpx.post(f"{gateway.url}/public/upload", content=b"y" * 300_000, timeout=20)
        assert public.status_code == 200
        assert public.json()["body_bytes"] == 300_000


def test_a_slow_head_is_cut_off(tmp_path: Path, upstream: Server, issuer: TestIssuer) -> None:
    """gunicorn (gevent workers): the head must be complete within ``header_timeout``."""
    with _gateway(tmp_path, upstream, issuer, "gunicorn", "header_timeout = 1.0") as gateway:
        with RawConnection(gateway.port, timeout=30) as conn:
            conn.send(b"GET /public/ok HTTP/1.1\r\nHost: x\r\n")
            with _trickling([conn.sock], b"X-Slow: 1\r\n"), pytest.raises(Closed):
                conn.read_response()
        # and the gateway still serves
        assert httpx.get(f"{gateway.url}/public/ok", timeout=20).status_code == 200
