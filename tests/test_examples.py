"""The integrator and desktop examples, run for real against a real issuer server process.

Every program here is a separate process on a free loopback port: the issuer (gunicorn),
``examples/integrator_app.py`` and ``examples/desktop_client.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import free_port
from interop.issuer_server import IssuerServer, issuer_server, stop_process, wait_http

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow

CHALLENGE = 'Bearer realm="licensechain"'
INVALID_TOKEN = 'Bearer realm="licensechain", error="invalid_token"'


def refused_for(reason: str) -> str:
    """The challenge of a refused token, with its reason class."""
    return f'{INVALID_TOKEN}, error_description="{reason}"'


def expected_hardware_id() -> str:
    raw = f"licensechain|python|{socket.gethostname()}|{platform.system()}|{platform.machine()}"
    return hashlib.sha256(raw.encode()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerServer]:
    with issuer_server(tmp_path_factory.mktemp("examples_issuer"), free_port()) as running:
        yield running


# -- the desktop client ----------------------------------------------------------------------


def desktop(server: IssuerServer, key: str, state_dir: Path, *args: str) -> tuple[int, Any]:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "desktop_client.py"),
            "--server",
            server.base_url,
            "--key",
            key,
            "--issuer",
            server.issuer,
            "--state-dir",
            str(state_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    return done.returncode, json.loads(lines[-1])


def kept_token(state_dir: Path) -> str:
    return str(json.loads((state_dir / "token.json").read_text())["token"])


def test_desktop_client_prints_the_default_hardware_id() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "desktop_client.py"), "--print-hardware-id"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == expected_hardware_id()


def test_desktop_client_activates_binds_and_reuses_its_token(
    server: IssuerServer, tmp_path: Path
) -> None:
    lic = server.new_license(plan="pro", features=["export"])
    code, first = desktop(server, lic.key, tmp_path)
    assert code == 0
    assert first["licensed"] is True and first["source"] == "online"
    assert first["license_id"] == lic.id and first["features"] == ["export"]
    # Bound with LicenseChain's default hardware id, and the token says so.
    stored = server.store.licenses.get(lic.id)
    assert stored is not None
    assert [d.hwuid for d in stored.devices] == [expected_hardware_id()]
    claims = jwt.decode(kept_token(tmp_path), options={"verify_signature": False})
    assert claims["hw_bound"] is True and claims["jti"] == first["jti"]
    for name in ("token.json", "jwks.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600

    code, second = desktop(server, lic.key, tmp_path)
    assert code == 0
    assert second["source"] == "cache" and second["jti"] == first["jti"]


def test_desktop_client_refreshes_before_exp(server: IssuerServer, tmp_path: Path) -> None:
    lic = server.new_license(features=["export"])
    _, first = desktop(server, lic.key, tmp_path)
    # The pro tier's token lives an hour: asking for a refresh 2 h ahead forces one now.
    code, refreshed = desktop(server, lic.key, tmp_path, "--refresh-before", "7200")
    assert code == 0
    assert refreshed["source"] == "online" and refreshed["jti"] != first["jti"]
    assert (
        jwt.decode(kept_token(tmp_path), options={"verify_signature": False})["jti"]
        == (refreshed["jti"])
    )
    _, again = desktop(server, lic.key, tmp_path)
    assert again["source"] == "cache" and again["jti"] == refreshed["jti"]


def test_desktop_client_drops_its_token_when_the_license_is_revoked(
    server: IssuerServer, tmp_path: Path
) -> None:
    lic = server.new_license(features=["export"])
    assert desktop(server, lic.key, tmp_path)[0] == 0
    revoked = httpx.patch(
        f"{server.issuer}/licenses/{lic.id}/revoke", headers=server.admin(), json={}
    )
    assert revoked.status_code == 200, revoked.text
    code, status = desktop(server, lic.key, tmp_path, "--refresh-before", "7200")
    assert code == 1
    assert status == {
        "licensed": False,
        "source": "online",
        "offline": False,
        "reason": "license_revoked",
    }
    assert not (tmp_path / "token.json").exists()


def test_desktop_client_reports_a_hardware_mismatch(server: IssuerServer, tmp_path: Path) -> None:
    lic = server.new_license(max_devices=1)
    assert server.verify(lic.key, hwuid="another-machine")["valid"] is True
    code, status = desktop(server, lic.key, tmp_path)
    assert code == 1
    assert status["licensed"] is False and status["reason"] == "hardware_id_mismatch"


def test_desktop_client_works_offline_until_exp(tmp_path: Path) -> None:
    running = IssuerServer(tmp_path / "issuer", free_port())
    try:
        running.start()
        # The license ends soon, so its token does too (exp <= license expiry). Two client runs
        # (each a fresh interpreter) must fit before it ends, also on a loaded CI machine.
        ends = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
        lic = running.new_license(features=["export"], expires_at=ends)
        state = tmp_path / "client"
        code, online = desktop(running, lic.key, state, "--refresh-before", "1")
        assert code == 0 and online["source"] == "online"
        assert online["expires_at"] == int(ends.timestamp())

        running.stop()  # the network is gone from here on
        code, offline = desktop(running, lic.key, state, "--refresh-before", "3600")
        assert code == 0
        assert offline["licensed"] is True and offline["offline"] is True
        assert offline["source"] == "cache" and offline["jti"] == online["jti"]

        time.sleep(max(0.0, online["expires_at"] - time.time()) + 1.5)
        code, expired = desktop(running, lic.key, state, "--refresh-before", "1")
        assert code == 1
        assert expired["licensed"] is False and expired["offline"] is True
        assert expired["reason"].startswith("server_unreachable")
    finally:
        running.close()


# -- the integrator app ----------------------------------------------------------------------


class IntegratorProcess:
    def __init__(self, server: IssuerServer, audience: str, **extra_env: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "LICENSECHAIN_JWKS_URL": server.jwks_url,
            "LICENSECHAIN_ISSUER": server.issuer,
            "LICENSECHAIN_AUDIENCE": audience,
            **extra_env,
        }
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "integrator_app.py"), "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(self.url("/"), self.process)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(self.url(path), headers=headers, timeout=10)

    def stop(self) -> None:
        stop_process(self.process)


def test_integrator_app_gates_reports_export(server: IssuerServer, tmp_path: Path) -> None:
    lic = server.new_license(plan="pro", features=["export"])
    other = server.store.licenses.create(lic.app_id, plan="free", features=["view"])
    foreign = server.new_license(features=["export"])  # another seller app: another audience
    # The desktop client gets the token, as a real user's client would.
    assert desktop(server, lic.key, tmp_path / "client")[0] == 0
    token = kept_token(tmp_path / "client")

    integrator = IntegratorProcess(server, lic.app_id)
    try:
        ok = integrator.get("/reports/export", token)
        assert ok.status_code == 200, ok.text
        assert ok.json()["licensed_to"] == lic.id
        assert integrator.get("/me", token).json() == {
            "license_id": lic.id,
            "plan": "pro",
            "features": ["export"],
        }

        missing = integrator.get("/reports/export")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == CHALLENGE
        assert missing.json()["error"] == "unauthorized"

        no_feature = integrator.get("/reports/export", server.verify(other.key)["license_token"])
        assert no_feature.status_code == 403
        assert no_feature.json()["error"] == "insufficient_scope"

        wrong_app = integrator.get("/reports/export", server.verify(foreign.key)["license_token"])
        assert wrong_app.status_code == 401
        assert wrong_app.headers["WWW-Authenticate"] == refused_for("wrong_audience")

        tampered = integrator.get("/reports/export", token[:-6] + "AAAAAA")
        assert tampered.status_code == 401
    finally:
        integrator.stop()


def test_integrator_app_authoritative_mode_sees_a_suspension(server: IssuerServer) -> None:
    lic = server.new_license(features=["export"])
    token = server.verify(lic.key)["license_token"]
    plain = IntegratorProcess(server, lic.app_id)
    authoritative = IntegratorProcess(
        server,
        lic.app_id,
        LICENSECHAIN_AUTHORITATIVE="true",
        LICENSECHAIN_AUTHORITATIVE_CACHE_TTL="0",
    )
    try:
        assert plain.get("/reports/export", token).status_code == 200
        assert authoritative.get("/reports/export", token).status_code == 200
        suspended = httpx.patch(
            f"{server.issuer}/licenses/{lic.id}/suspend", headers=server.admin(), json={}
        )
        assert suspended.status_code == 200, suspended.text
        # No shared Redis: the plain gate trusts the token until exp; the authoritative one
        # asks the issuer's introspect endpoint and refuses at once.
        assert plain.get("/reports/export", token).status_code == 200
        refused = authoritative.get("/reports/export", token)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == refused_for("revoked")
    finally:
        plain.stop()
        authoritative.stop()


@pytest.mark.redis
def test_revocation_reaches_every_gunicorn_worker_of_the_integrator_at_once(
    tmp_path: Path, redis_url: str
) -> None:
    """The issuer suspends a license through its API; the integrator app, two gunicorn
    workers sharing only the issuer's Redis denylist, refuses the license's token in both."""
    with issuer_server(tmp_path / "issuer", free_port(), LICENSECHAIN_REDIS_URL=redis_url) as iss:
        lic = iss.new_license(features=["export"])
        token = iss.verify(lic.key)["license_token"]
        port = free_port()
        env = {
            **os.environ,
            "LICENSECHAIN_JWKS_URL": iss.jwks_url,
            "LICENSECHAIN_ISSUER": iss.issuer,
            "LICENSECHAIN_AUDIENCE": lic.app_id,
            "LICENSECHAIN_DENYLIST_URL": redis_url,
        }
        workers = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--chdir",
                str(EXAMPLES),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--log-level",
                "warning",
                "integrator_app:create_app()",
            ],
            env=env,
        )
        url = f"http://127.0.0.1:{port}/reports/export"
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        try:
            wait_http(url, workers)
            # New connections spread over both workers: every one of them lets it through.
            assert {httpx.get(url, headers=headers).status_code for _ in range(20)} == {200}
            suspended = httpx.patch(
                f"{iss.issuer}/licenses/{lic.id}/suspend", headers=iss.admin(), json={}
            )
            assert suspended.status_code == 200, suspended.text
            deadline = time.monotonic() + 3
            while httpx.get(url, headers=headers).status_code == 200:
                assert time.monotonic() < deadline, "revocation did not reach the gate"
                time.sleep(0.01)
            answers = [httpx.get(url, headers=headers) for _ in range(20)]
            assert {a.status_code for a in answers} == {401}
            assert {a.headers["WWW-Authenticate"] for a in answers} == {refused_for("revoked")}
        finally:
            stop_process(workers)


# -- what a newcomer sees when a setting is wrong -------------------------------------------


@pytest.mark.parametrize(
    ("program", "settings", "says"),
    [
        (
            "integrator_app.py",
            {"LICENSECHAIN_JWKS_URL": "http://127.0.0.1:9/v1/licenses/jwks"},
            "integrator_app: LICENSECHAIN_AUDIENCE is required",
        ),
        (
            "quickstart.py",
            {"LICENSECHAIN_LEEWAY": "abc"},
            "quickstart: LICENSECHAIN_LEEWAY must be",
        ),
        (
            "quickstart.py",
            {"LICENSECHAIN_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none"},
            "quickstart: LICENSECHAIN_ENCRYPTION_KEY is required with a postgresql store",
        ),
    ],
)
def test_examples_name_a_bad_setting_without_a_traceback(
    program: str, settings: dict[str, str], says: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LICENSECHAIN_", "FLASK_"))}
    env.update(settings, QUICKSTART_INSTANCE_PATH=str(tmp_path), PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / program)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_desktop_client_help_describes_every_option() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "desktop_client.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    options = done.stdout.split("options:", 1)[1]
    for option in ("--server SERVER", "--key KEY", "--issuer ISSUER", "--state-dir STATE_DIR"):
        described = options.split(option, 1)[1].split("\n  -", 1)[0]
        assert described.strip(), f"{option} has no help text:\n{done.stdout}"
