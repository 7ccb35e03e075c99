"""LicenseChain's Python SDK, unchanged, against a real server process: only the base URL differs.

The SDK (``licensechain-sdk``, pinned below) is installed from PyPI with ``requests``, PyJWT
and ``cryptography`` into a throwaway virtualenv, kept under pytest's temporary root so later
runs reuse it. ``tests/interop/licensechain_sdk_run.py`` then calls, in that virtualenv, every
SDK method that maps to an endpoint we have (the sync ``Client`` and its licenses service, the
async ``LicenseChainClient``, ``LicenseValidator`` and ``verify_license_assertion_jwt``)
against gunicorn serving the issuer, and checks each answer. The test skips when the package
cannot be installed, and fails instead under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, require_service
from interop.issuer_server import IssuerServer, issuer_server

pytestmark = pytest.mark.slow

RUNNER = Path(__file__).resolve().parent / "interop" / "licensechain_sdk_run.py"
#: the SDK version whose requests this suite was written from
SDK_REQUIREMENTS = ["licensechain-sdk==1.1.6", "requests", "PyJWT", "cryptography"]

#: every SDK method that maps to one of our endpoints: each must come back "ok"
MAPPED = {
    "Client.ping",
    "Client.health",
    "Client.licenses.create",
    "Client.licenses.get",
    "Client.licenses.update",
    "Client.licenses.validate",
    "Client.licenses.verify_with_details",
    "Client.licenses.list_user_licenses",
    "Client.licenses.stats",
    "Client.licenses.revoke",
    "Client.licenses.get (missing license: 404)",
    "verify_license_assertion_jwt",
    "LicenseChainClient.get_health_check",
    "LicenseChainClient.get_system_status",
    "LicenseChainClient.create_application",
    "LicenseChainClient.list_applications",
    "LicenseChainClient.get_application",
    "LicenseChainClient.update_application",
    "LicenseChainClient.delete_application",
    "LicenseChainClient.regenerate_api_key",
    "LicenseChainClient.create_license",
    "LicenseChainClient.list_licenses",
    "LicenseChainClient.get_license",
    "LicenseChainClient.update_license",
    "LicenseChainClient.delete_license",
    "LicenseChainClient.validate_license",
    "LicenseChainClient.revoke_license",
    "LicenseChainClient.activate_license",
    "LicenseChainClient.extend_license",
    "LicenseChainClient.get_analytics",
    "LicenseChainClient.get_license_analytics",
    "LicenseChainClient.get_usage_stats",
    "LicenseChainClient.get_dashboard_insights",
    "LicenseChainClient.get_advanced_analytics",
    "LicenseChainClient.register_user (not provided: 404)",
    "LicenseChainClient.login (not provided: 404)",
    "LicenseChainClient.get_user_profile (not provided: 404)",
    "LicenseValidator.validate_license",
    "LicenseValidator.is_valid",
    "LicenseValidator.get_license_info",
    "LicenseValidator.is_expired",
    "LicenseValidator.get_days_until_expiration",
    "LicenseValidator.validate_licenses",
}


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a virtualenv with the SDK, made once and reused across runs."""
    tag = "-".join(r.replace("==", "") for r in SDK_REQUIREMENTS[:1])
    venv = tmp_path_factory.getbasetemp().parent / f"licensechain-sdk-venv-{tag}"
    python = venv / "bin" / "python"
    ready = venv / "installed.ok"
    if ready.exists() and python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    try:
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *SDK_REQUIREMENTS,
            ],
            check=True,
            timeout=600,
            capture_output=True,
            text=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        output = getattr(error, "stderr", "") or ""
        require_service(f"licensechain-sdk could not be installed: {error}\n{output[-2000:]}")
    ready.write_text("\n".join(SDK_REQUIREMENTS))
    return python


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerServer]:
    # The SDK sets an app's webhook_url to a loopback address: no worker sends to it, and
    # no name has to resolve (the destination rule applies when it is set).
    allow = {"LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE": "true"}
    with issuer_server(tmp_path_factory.mktemp("sdk_issuer"), free_port(), **allow) as running:
        yield running


def test_the_python_sdk_works_unchanged(sdk_python: Path, server: IssuerServer) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LC_BASE_URL": server.issuer,
        "LC_API_KEY": server.admin_key,
        "LC_ISSUER": server.issuer,
    }
    done = subprocess.run(
        [str(sdk_python), str(RUNNER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    failed = {name: outcome for name, outcome in results.items() if outcome != "ok"}
    assert not failed, f"{failed}\n{done.stderr[-4000:]}"
    assert set(results) >= MAPPED, sorted(MAPPED - set(results))
