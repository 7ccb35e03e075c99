"""Large bodies stream through the gateway in both directions with bounded memory.

The gateway's worker process is measured from /proc: its peak resident set
(``VmHWM``) may grow by far less than the bytes that went through it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support.gateway_config import write_config
from gateway_support.processes import Server, gateway_server, upstream_server
from gateway_support.tokens import TestIssuer

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
THROUGH = 256 * MiB
#: Allowed peak-RSS growth of the worker while THROUGH bytes pass (buffers, pools, allocator).
BOUND = 48 * MiB


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def worker_pid(server: Server) -> int:
    """The one worker that serves requests: gunicorn's child, or uvicorn itself."""
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0]) if children else master


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    with upstream_server() as server:
        yield server


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def gateway(
    request: pytest.FixtureRequest, upstream: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    issuer = TestIssuer(tmp_path_factory.mktemp("issuer"))
    config = write_config(
        tmp_path_factory.mktemp("gw"),
        upstream=upstream.url,
        jwks_file=issuer.jwks_file,
        rules='[[rules]]\npath = "/**"\npublic = true\n',
        read_timeout=30.0,
    )
    with gateway_server(config, server=request.param, workers=1) as server:
        httpx.get(f"{server.url}/download?bytes=1024")  # warm the worker before measuring
        yield server


def test_large_download_streams_with_bounded_memory(gateway: Server) -> None:
    pid = worker_pid(gateway)
    before = _status_kib(pid, "VmRSS")
    received = 0
    with httpx.stream("GET", f"{gateway.url}/download?bytes={THROUGH}", timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(THROUGH)
        for chunk in response.iter_raw(256 * 1024):
            received += len(chunk)
    assert received == THROUGH
    growth = _status_kib(pid, "VmHWM") - before
    assert growth < BOUND, f"worker peak RSS grew by {growth / MiB:.1f} MiB"


def test_large_upload_streams_with_bounded_memory(gateway: Server) -> None:
    pid = worker_pid(gateway)
    before = _status_kib(pid, "VmRSS")
    block = bytes(range(256)) * 256  # 64 KiB
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(THROUGH // len(block)):
            digest.update(block)
            yield block

    response = httpx.post(f"{gateway.url}/upload", content=body(), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"bytes": THROUGH, "sha256": digest.hexdigest()}
    growth = _status_kib(pid, "VmHWM") - before
    assert growth < BOUND, f"worker peak RSS grew by {growth / MiB:.1f} MiB"


def test_client_leaving_mid_download_leaves_the_gateway_serving(gateway: Server) -> None:
    for _ in range(3):
        with httpx.stream("GET", f"{gateway.url}/download?bytes={THROUGH}", timeout=30) as r:
            assert r.status_code == 200
            next(r.iter_raw(1024 * 1024))  # read a little, then hang up
    response = httpx.get(f"{gateway.url}/download?bytes=10", timeout=10)
    assert response.status_code == 200
    assert response.content == b"x" * 10
