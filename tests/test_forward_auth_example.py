"""examples/nginx_forward_auth walked through as its README says, with real processes: the
quickstart license server, the stdlib legacy service, the decision service
(`licensechain-gateway --mode authz` with the example's authz.toml) and nginx with the
example's nginx.conf, sharing Redis so that a revocation on the server reaches the gate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
from conftest import free_port
from gateway_support.processes import VENV_BIN, Server, run_server
from gateway_support.proxies import EXAMPLE, Ports, nginx_conf, nginx_server
from gateway_support.walkthrough import (
    Demo,
    refused_status,
    start_legacy_service,
    start_quickstart,
)
from licensechain_middleware.gateway.config import load_config
from licensechain_middleware.gateway.settings import GatewayConfigError

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@dataclass
class Walkthrough:
    demo: Demo
    nginx: Server


@pytest.fixture(scope="module")
def walkthrough(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    authz_port = free_port()
    with ExitStack() as stack:
        demo = start_quickstart(stack, tmp_path_factory.mktemp("quickstart"), redis_url)
        service = start_legacy_service(stack)
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
                    "LICENSECHAIN_AUDIENCE": demo.app_id,
                    "LICENSECHAIN_REDIS_URL": redis_url,
                    # The README's ports are fixed; the test's are free ones.
                    "LICENSECHAIN_ISSUER": demo.api,
                    "LICENSECHAIN_JWKS_URL": f"{demo.api}/licenses/jwks",
                },
                ready_path="/_licensechain/ready",
            )
        )
        ports = Ports(authz=authz_port, upstream=service.port)
        nginx = stack.enter_context(nginx_server(nginx_conf(ports, free_port())))
        yield Walkthrough(demo, nginx)


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
    auth = {"Authorization": f"Bearer {walkthrough.demo.license_token()}"}
    spoofed = {"X-License-Plan": "enterprise", "X_License_Plan": "enterprise"}
    reports = httpx.get(f"{url}/reports", headers={**auth, **spoofed})
    assert reports.status_code == 200
    licensee = reports.json()["licensee"]
    assert licensee["license"] == walkthrough.demo.license_id
    assert licensee["app"] == walkthrough.demo.app_id
    assert licensee["plan"] == "pro"
    export = httpx.get(f"{url}/reports/export", headers=auth)
    assert export.text.startswith("id,name\n")


def test_revoking_the_license_closes_nginx(walkthrough: Walkthrough) -> None:
    url = walkthrough.nginx.url
    auth = {"Authorization": f"Bearer {walkthrough.demo.license_token()}"}
    assert httpx.get(f"{url}/reports", headers=auth).status_code == 200
    walkthrough.demo.revoke_license()
    assert refused_status(f"{url}/reports", auth) == 401
