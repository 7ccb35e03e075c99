"""``examples/quickstart.py`` as a user runs it: a real process on a free port, whose printed
curl commands are followed step by step (with httpx), then restarted without duplicates."""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import free_port

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"
LAST_LINE = "Ctrl+C stops the server."
pytestmark = pytest.mark.slow


@dataclass
class Curl:
    method: str
    url: str
    headers: dict[str, str]
    data: str | None

    @classmethod
    def parse(cls, line: str) -> Curl:
        """The few curl options the quickstart prints: -s, -X, -H and -d."""
        words = shlex.split(line)
        assert words[0] == "curl", line
        method, url, headers, data = "GET", "", {}, None
        rest = iter(words[1:])
        for word in rest:
            if word == "-s":
                continue
            if word == "-X":
                method = next(rest)
            elif word == "-H":
                name, _, value = next(rest).partition(":")
                headers[name.strip()] = value.strip()
            elif word == "-d":
                data = next(rest)
            else:
                assert word.startswith("http://") and not url, line
                url = word
        return cls(method, url, headers, data)

    def send(self, **variables: str) -> httpx.Response:
        data = self.data
        for name, value in variables.items():
            data = data.replace("$" + name, value) if data is not None else None
        return httpx.request(self.method, self.url, headers=self.headers, content=data)


@dataclass
class Started:
    output: list[str]
    process: subprocess.Popen[str]

    def curls(self) -> list[Curl]:
        return [
            Curl.parse(line.strip()) for line in self.output if line.strip().startswith("curl ")
        ]

    def field(self, label: str) -> str:
        for line in self.output:
            match = re.match(rf"\s+{label}\s+(\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"no {label!r} line in {self.output}")


def quickstart_env(instance: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LICENSECHAIN_", "FLASK_"))}
    env.update(QUICKSTART_INSTANCE_PATH=str(instance), HOST="127.0.0.1", PORT=str(port), **extra)
    return env


@contextmanager
def quickstart(env: dict[str, str], timeout: float = 60) -> Iterator[Started]:
    process = subprocess.Popen(
        [sys.executable, str(QUICKSTART)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while LAST_LINE not in output:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"quickstart exited early: {output}"
            output.append(line)
        base = f"http://127.0.0.1:{env['PORT']}"
        _wait_until_serving(base + "/v1/health", process, deadline)
        yield Started(output, process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(url: str, process: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert process.poll() is None, "quickstart died"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def json_of(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_quickstart_prints_working_curl_steps_and_restarts_without_duplicates(
    tmp_path: Path,
) -> None:
    instance = tmp_path / "instance"
    port = free_port()
    database = tmp_path / "custom.db"
    env = quickstart_env(
        instance,
        port,
        # LICENSECHAIN_* from the environment reach the extension.
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{database}",
        LICENSECHAIN_ISSUER="https://licenses.example.test/v1",
    )
    with quickstart(env) as first:
        license_key = first.field("license key")
        api_key = first.field("admin API key")
        assert re.fullmatch(r"LC-[A-Z0-9]{6}-[A-Z0-9]{6}-[A-Z0-9]{6}", license_key)
        assert api_key.startswith("lc_live_")
        verify, introspect, list_apps = first.curls()
        base = f"http://127.0.0.1:{port}/v1"
        assert (verify.method, verify.url) == ("POST", f"{base}/licenses/verify")
        assert (introspect.method, introspect.url) == ("POST", f"{base}/licenses/introspect")
        assert list_apps.url == f"{base}/apps"

        # Step 1: the key verifies and the answer carries a token for the demo features.
        verified = json_of(verify.send())
        assert verified["valid"] is True
        assert (verified["features"], verified["plan"]) == (["export"], "pro")
        assert verified["hwBound"] is True
        token = verified["license_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iss"] == "https://licenses.example.test/v1"

        # Step 2: the printed introspect command, with TOKEN filled in as the shell would.
        introspected = json_of(introspect.send(TOKEN=token))
        assert introspected["active"] is True
        assert introspected["sub"] == verified["id"]
        assert introspected["features"] == ["export"]

        # Step 3: the admin key works.
        apps = json_of(list_apps.send())["apps"]
        assert [a["name"] for a in apps] == ["Quickstart Demo"]

        # The admin console (the dev extras include the console's): its first owner's
        # one-time setup link opens the set-up page.
        console = first.field("admin console")
        link = first.field("setup link")
        assert console == f"http://127.0.0.1:{port}/console"
        assert link.startswith(f"{console}/setup/")
        page = httpx.get(link)
        assert page.status_code == 200 and "owner@example.com" in page.text
    assert database.exists()  # the configured store, not the instance default
    assert not (instance / "licensechain.db").exists()

    # A later start reuses the demo: same key, no new API key, no duplicate rows.
    with quickstart(env) as second:
        assert second.field("license key") == license_key
        assert "lc_live_" not in "\n".join(second.output)
        assert "create-api-key" in "\n".join(second.output)
        assert "/console/setup/" not in "\n".join(second.output)  # shown once
        assert second.field("admin console") == f"http://127.0.0.1:{port}/console"
        auth = {"Authorization": f"Bearer {api_key}"}
        apps = json_of(httpx.get(f"http://127.0.0.1:{port}/v1/apps", headers=auth))["apps"]
        licenses = json_of(httpx.get(f"http://127.0.0.1:{port}/v1/licenses", headers=auth))
        assert len(apps) == 1
        assert licenses["total"] == 1
        assert json_of(second.curls()[0].send())["valid"] is True


def test_quickstart_on_the_embedded_default(tmp_path: Path) -> None:
    """No LICENSECHAIN_* at all: SQLite and its sealing-key file in the instance folder."""
    instance = tmp_path / "instance"
    with quickstart(quickstart_env(instance, free_port())) as started:
        assert any(
            line.strip().startswith("stores         SQLite store") for line in started.output
        )
        assert json_of(started.curls()[0].send())["valid"] is True
    assert (instance / "licensechain.db").exists()
    assert (instance / "quickstart.json").exists()
    assert oct((instance / "licensechain.key").stat().st_mode & 0o777) == "0o600"


def test_quickstart_restart_says_when_its_demo_license_no_longer_verifies(
    tmp_path: Path,
) -> None:
    """A walkthrough that suspends or revokes the demo license leaves it so across restarts;
    the next start must say so (and how to get a working one), not print it as usable."""
    env = quickstart_env(tmp_path / "instance", free_port())
    with quickstart(env) as first:
        admin = {"Authorization": f"Bearer {first.field('admin API key')}"}
        verified = json_of(first.curls()[0].send())
        base = first.curls()[0].url.rsplit("/licenses/", 1)[0]
        revoked = httpx.patch(f"{base}/licenses/{verified['id']}/revoke", json={}, headers=admin)
        assert revoked.status_code == 200, revoked.text
        assert "REVOKED" not in "\n".join(first.output)
    with quickstart(env) as second:
        shown = "\n".join(second.output)
        assert "REVOKED: verify refuses it for good" in shown
        assert f"create-license\n{' ' * 17}  --app-id {verified['appId']} --feature export" in shown
        assert json_of(second.curls()[0].send())["valid"] is False
