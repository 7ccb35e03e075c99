"""Real processes for the gateway tests: an upstream under uvicorn, gateways under gunicorn
or uvicorn (through the ``licensechain-gateway`` command). Each binds 127.0.0.1 on a free
port and is stopped (SIGTERM, then SIGKILL) when its context ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"process exited early ({process.returncode}):\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("process did not start listening:\n" + log_path.read_text()[-4000:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def run_server(
    args: list[str], port: int, env: Mapping[str, str] | None = None, ready_path: str | None = None
) -> Iterator[Server]:
    log_file = tempfile.NamedTemporaryFile(prefix="lc-gw-test-", suffix=".log", delete=False)
    log_path = Path(log_file.name)
    full_env = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        args,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process, log_path)
        if ready_path:
            _wait_ready(f"http://127.0.0.1:{port}{ready_path}", process, log_path)
        yield Server(f"http://127.0.0.1:{port}", port, process, log_path)
    finally:
        _stop(process)
        log_file.close()
        with contextlib.suppress(OSError):
            log_path.unlink()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("process exited:\n" + log_path.read_text(errors="replace")[-4000:])
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("never ready:\n" + log_path.read_text(errors="replace")[-4000:])


@contextlib.contextmanager
def upstream_server() -> Iterator[Server]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "upstream:app",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--http",
        "h11",
        "--ws",
        "websockets",
    ]
    with run_server(args, port) as server:
        yield server


@contextlib.contextmanager
def wsgi_upstream_server() -> Iterator[Server]:
    """``wsgi_upstream.py`` under Werkzeug's server (``_`` in header names read as ``-``)."""
    port = free_port()
    with run_server([sys.executable, str(HERE / "wsgi_upstream.py"), str(port)], port) as server:
        yield server


@contextlib.contextmanager
def gateway_server(
    config: Path,
    *,
    server: str = "gunicorn",
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    port = free_port()
    args = [
        str(VENV_BIN / "licensechain-gateway"),
        "--config",
        str(config),
        "--server",
        server,
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
    ]
    with run_server(args, port, env, ready_path="/_licensechain/ready") as running:
        yield running
