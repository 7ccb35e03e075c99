"""A real issuer server process (gunicorn) on a free loopback port, seeded from the test.

The test process opens the same SQLite store first (creating the signing key, a seller app,
licenses and an admin API key), then gunicorn serves it. Used by the jose interop test and
the examples test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from flask import Flask

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.store import Store

HERE = Path(__file__).resolve().parent


@dataclass
class IssuerServer:
    directory: Path
    port: int
    #: more ``LICENSECHAIN_*`` settings (strings), e.g. a shared Redis
    extra_config: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    store: Store = field(init=False)
    admin_key: str = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        seed = Flask("issuer_seed", instance_path=str(self.directory / "instance"))
        seed.config.update(self.config())
        LicenseChain(seed)
        state = get_state(seed)
        state.denylist.close()  # only the store is used from the test process
        assert state.store is not None
        self.store = state.store
        _, self.admin_key = self.store.api_keys.create("tests", ["*"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.base_url + "/v1"

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/v1/licenses/jwks"

    def config(self) -> dict[str, str]:
        return {
            "LICENSECHAIN_DATABASE_URL": f"sqlite:///{self.directory / 'licensechain.db'}",
            "LICENSECHAIN_ISSUER": self.issuer,
            "LICENSECHAIN_RATELIMIT_ENABLED": "false",
            # Other workers (and the seeding test process) see rotations within a second.
            "LICENSECHAIN_KEY_REFRESH_INTERVAL": "1",
            **self.extra_config,
        }

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def new_license(self, tier: str = "pro", **fields: Any) -> Any:
        seller_app = self.store.apps.create("Interop App", tier=tier)
        return self.store.licenses.create(seller_app.id, **fields)

    def verify(self, key: str, **body: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.issuer}/licenses/verify", json={"key": key, **body})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def start(self) -> None:
        env = {
            **os.environ,
            **self.config(),
            "ISSUER_INSTANCE_PATH": str(self.directory / "instance"),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--chdir",
                str(HERE),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--log-level",
                "warning",
                "issuer_app:create_app()",
            ],
            env=env,
        )
        wait_http(self.base_url + "/v1/health", self.process)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.store.dispose()


@contextmanager
def issuer_server(directory: Path, port: int, **extra_config: str) -> Iterator[IssuerServer]:
    server = IssuerServer(directory, port, extra_config)
    try:
        server.start()
        yield server
    finally:
        server.close()


def wait_http(url: str, process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Wait until ``url`` answers (any status) or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server process exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
