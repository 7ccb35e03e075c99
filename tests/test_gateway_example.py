"""examples/legacy_service walked through as its README says, with real processes:
the quickstart license server, the stdlib service, and the gateway between them,
sharing Redis so that a revocation on the server reaches the gateway at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from gateway_support.processes import REPO, VENV_BIN, Server, run_server
from gateway_support.walkthrough import (
    Demo,
    refused_status,
    start_legacy_service,
    start_quickstart,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

EXAMPLE = REPO / "examples" / "legacy_service"


@dataclass
class Walkthrough:
    demo: Demo
    gateway: Server


@pytest.fixture(scope="module")
def walkthrough(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    gateway_port = free_port()
    with ExitStack() as stack:
        demo = start_quickstart(stack, tmp_path_factory.mktemp("quickstart"), redis_url)
        service = start_legacy_service(stack)
        gateway = stack.enter_context(
            run_server(
                [
                    str(VENV_BIN / "licensechain-gateway"),
                    "--config",
                    str(EXAMPLE / "gateway.toml"),
                    "--bind",
                    f"127.0.0.1:{gateway_port}",
                ],
                gateway_port,
                {
                    "LICENSECHAIN_AUDIENCE": demo.app_id,
                    "LICENSECHAIN_REDIS_URL": redis_url,
                    # The README's ports are fixed; the test's are free ones.
                    "LICENSECHAIN_ISSUER": demo.api,
                    "LICENSECHAIN_JWKS_URL": f"{demo.api}/licenses/jwks",
                    "LICENSECHAIN_GATEWAY_UPSTREAM": service.url,
                },
                ready_path="/_licensechain/ready",
            )
        )
        yield Walkthrough(demo, gateway)


def test_the_example_config_needs_an_audience(tmp_path: Path) -> None:
    from licensechain_middleware.gateway.config import load_config
    from licensechain_middleware.gateway.settings import GatewayConfigError

    with pytest.raises(GatewayConfigError, match="audience is required"):
        load_config(EXAMPLE / "gateway.toml", env={})
    config = load_config(EXAMPLE / "gateway.toml", env={"LICENSECHAIN_AUDIENCE": "app_x"})
    assert config.gateway.upstream == "http://127.0.0.1:8001"


def test_public_route_needs_no_license(walkthrough: Walkthrough) -> None:
    response = httpx.get(f"{walkthrough.gateway.url}/status")
    assert response.json() == {"status": "up"}


def test_licensed_routes_with_the_quickstart_license(walkthrough: Walkthrough) -> None:
    gw = walkthrough.gateway.url
    assert httpx.get(f"{gw}/reports").status_code == 401
    auth = {"Authorization": f"Bearer {walkthrough.demo.license_token()}"}
    reports = httpx.get(f"{gw}/reports", headers={**auth, "X-License-Plan": "enterprise"})
    assert reports.status_code == 200
    licensee = reports.json()["licensee"]
    assert licensee["license"] == walkthrough.demo.license_id
    assert licensee["app"] == walkthrough.demo.app_id
    assert licensee["plan"] == "pro"
    export = httpx.get(f"{gw}/reports/export", headers=auth)
    assert export.status_code == 200
    assert export.text.startswith("id,name\n")
    metrics = httpx.get(f"{gw}/_licensechain/metrics").text
    assert 'licensechain_gateway_jwks_fetches_total{outcome="attempt"}' in metrics
    assert 'licensechain_gateway_jwks_fetches_total{outcome="attempt"} 0.0' not in metrics


def test_suspending_the_license_on_the_server_closes_the_gateway(walkthrough: Walkthrough) -> None:
    """Step 5: suspend (the walkthrough keeps the demo license usable), then activate."""
    demo = walkthrough.demo
    reports = f"{walkthrough.gateway.url}/reports"
    auth = {"Authorization": f"Bearer {demo.license_token()}"}
    assert httpx.get(reports, headers=auth).status_code == 200
    admin = {"Authorization": f"Bearer {demo.admin_key}"}
    licenses = f"{demo.api}/licenses/{demo.license_id}"
    suspended = httpx.patch(f"{licenses}/suspend", json={}, headers=admin)
    assert suspended.status_code == 200, suspended.text
    assert refused_status(reports, auth, timeout=5) == 401
    activated = httpx.patch(f"{licenses}/activate", json={}, headers=admin)
    assert activated.status_code == 200, activated.text
    assert allowed_status(reports, auth, timeout=5) == 200
    assert demo.license_token(), "the demo license still verifies after the walkthrough"


def allowed_status(url: str, headers: dict[str, str], timeout: float) -> int:
    """The first 200 of ``url`` (or the last status), asked again until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = httpx.get(url, headers=headers).status_code
    while time.monotonic() < deadline and status != 200:
        status = httpx.get(url, headers=headers).status_code
    return status


def test_walkthrough_readme_keeps_the_demo_license_usable() -> None:
    """Step 5 must not end the quickstart's demo license for good (revoke is final)."""
    text = (EXAMPLE / "README.md").read_text("utf-8")
    step5 = text.split("## 5.")[1].split("## ")[0]
    commands = [line for line in step5.splitlines() if line.startswith("curl -s -X PATCH")]
    assert [c.split("$LICENSE_ID/")[1].split()[0] for c in commands] == ["suspend", "activate"]
    assert "<license id>" not in text and "LICENSE_ID=lic_" in text
