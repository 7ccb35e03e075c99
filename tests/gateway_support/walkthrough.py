"""The parts the example walk-throughs share: the quickstart license server with its demo
license, the stdlib legacy service, and what the READMEs do with them (fetch a license
token, revoke the license, wait until a front refuses)."""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import free_port

from .processes import REPO, Server, run_server

LEGACY_SERVICE = REPO / "examples" / "legacy_service" / "service.py"


@dataclass
class Demo:
    """The quickstart server and the demo it printed."""

    server: Server
    app_id: str
    license_id: str
    license_key: str
    admin_key: str

    @property
    def api(self) -> str:
        return f"{self.server.url}/v1"

    def license_token(self) -> str:
        response = httpx.post(
            f"{self.api}/licenses/verify",
            json={"key": self.license_key, "hwuid": "demo-machine-1"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["valid"] is True, body
        token: str = body["license_token"]
        return token

    def revoke_license(self) -> None:
        revoked = httpx.patch(
            f"{self.api}/licenses/{self.license_id}/revoke",
            json={"reason": "walkthrough"},
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )
        assert revoked.status_code == 200, revoked.text


def start_quickstart(stack: ExitStack, instance: Path, redis_url: str) -> Demo:
    """The quickstart on a free port, its revocations published through ``redis_url``."""
    port = free_port()
    server = stack.enter_context(
        run_server(
            [sys.executable, "examples/quickstart.py", "--port", str(port)],
            port,
            {"QUICKSTART_INSTANCE_PATH": str(instance), "LICENSECHAIN_REDIS_URL": redis_url},
        )
    )
    demo = json.loads((instance / "quickstart.json").read_text())
    admin = re.search(r"admin API key\s+(lc_\S+)", server.log())
    assert admin, server.log()
    return Demo(server, demo["app_id"], demo["license_id"], demo["license_key"], admin.group(1))


def start_legacy_service(stack: ExitStack) -> Server:
    port = free_port()
    return stack.enter_context(
        run_server([sys.executable, str(LEGACY_SERVICE), "--port", str(port)], port)
    )


def refused_status(url: str, headers: dict[str, str], timeout: float = 10.0) -> int:
    """The first non-200 status of ``url``, asked again until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = httpx.get(url, headers=headers).status_code
    return status
