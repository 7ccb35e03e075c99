"""examples/nginx_forward_auth walked through as its README says, with real processes: the
quickstart license server, the stdlib legacy service, the decision service
(`licensechain-gateway --mode authz` with the example's authz.toml) and nginx with the
example's nginx.conf, sharing Redis so that a revocation on the server reaches the gate."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
from conftest import free_port
from gateway_support.processes import REPO, VENV_BIN, Server, run_server
from gateway_support.proxies import EXAMPLE, Ports, nginx_conf, nginx_server
from licensechain_middleware.gateway.config import load_config
from licensechain_middleware.gateway.settings import GatewayConfigError

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@dataclass
class Walkthrough:
    server: Server
    nginx: Server
    app_id: str
    license_id: str
    license_key: str
    admin_key: str


@pytest.fixture(scope="module")
def walkthrough(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    instance = tmp_path_factory.mktemp("quickstart")
    server_port, service_port, authz_port = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{server_port}/v1"
    with ExitStack() as stack:
        server = stack.enter_context(
            run_server(
                [sys.executable, "examples/quickstart.py", "--port", str(server_port)],
                server_port,
                {"QUICKSTART_INSTANCE_PATH": str(instance), "LICENSECHAIN_REDIS_URL": redis_url},
            )
        )
        demo = json.loads((instance / "quickstart.json").read_text())
        stack.enter_context(
            run_server(
                [
                    sys.executable,
                    str(REPO / "examples/legacy_service/service.py"),
                    "--port",
                    str(service_port),
                ],
                service_port,
            )
        )
        stack.enter_context(
            run_server(
                [
                    str(VENV_BIN / "licensechain-gateway"),
                    "--config",
                    str(EXAMPLE / "authz.toml"),
                    "--bind",
                    f"127.0.0.1:{authz_port}",
                ],
                authz_port,
                {
                    "LICENSECHAIN_AUDIENCE": demo["app_id"],
                    "LICENSECHAIN_REDIS_URL": redis_url,
                    # The README's ports are fixed; the test's are free ones.
                    "LICENSECHAIN_ISSUER": api,
                    "LICENSECHAIN_JWKS_URL": f"{api}/licenses/jwks",
                },
                ready_path="/_licensechain/ready",
            )
        )
        ports = Ports(authz=authz_port, upstream=service_port)
        nginx = stack.enter_context(nginx_server(nginx_conf(ports, free_port())))
        admin = re.search(r"admin API key\s+(lc_\S+)", server.log())
        assert admin, server.log()
        yield Walkthrough(
            server, nginx, demo["app_id"], demo["license_id"], demo["license_key"],
            admin.group(1),
        )  # fmt: skip


def license_token(walk: Walkthrough) -> str:
    response = httpx.post(
        f"{walk.server.url}/v1/licenses/verify",
        json={"key": walk.license_key, "hwuid": "demo-machine-1"},
    )
    body = response.json()
    assert body["valid"] is True, body
    token: str = body["license_token"]
    return token


def test_the_example_authz_config_needs_an_audience() -> None:
    with pytest.raises(GatewayConfigError, match="audience is required"):
        load_config(EXAMPLE / "authz.toml", env={})
    config = load_config(EXAMPLE / "authz.toml", env={"LICENSECHAIN_AUDIENCE": "app_x"})
    assert config.gateway.mode == "authz"
    assert config.gateway.bind == "127.0.0.1:8081"


def test_public_and_licensed_routes_through_nginx(walkthrough: Walkthrough) -> None:
    url = walkthrough.nginx.url
    assert httpx.get(f"{url}/status").json() == {"status": "up"}
    refused = httpx.get(f"{url}/reports")
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    auth = {"Authorization": f"Bearer {license_token(walkthrough)}"}
    spoofed = {"X-License-Plan": "enterprise", "X_License_Plan": "enterprise"}
    reports = httpx.get(f"{url}/reports", headers={**auth, **spoofed})
    assert reports.status_code == 200
    licensee = reports.json()["licensee"]
    assert licensee["license"] == walkthrough.license_id
    assert licensee["app"] == walkthrough.app_id
    assert licensee["plan"] == "pro"
    export = httpx.get(f"{url}/reports/export", headers=auth)
    assert export.text.startswith("id,name\n")


def test_revoking_the_license_closes_nginx(walkthrough: Walkthrough) -> None:
    url = walkthrough.nginx.url
    auth = {"Authorization": f"Bearer {license_token(walkthrough)}"}
    assert httpx.get(f"{url}/reports", headers=auth).status_code == 200
    revoked = httpx.patch(
        f"{walkthrough.server.url}/v1/licenses/{walkthrough.license_id}/revoke",
        json={"reason": "walkthrough"},
        headers={"Authorization": f"Bearer {walkthrough.admin_key}"},
    )
    assert revoked.status_code == 200, revoked.text
    deadline = time.monotonic() + 10
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = httpx.get(f"{url}/reports", headers=auth).status_code
    assert status == 401
