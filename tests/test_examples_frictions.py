"""A newcomer's first day with the examples: the quickstart's banner says which stores are in
use and what that means for several workers, its step 2 takes the token from step 1's answer
by itself, the legacy walkthrough names the license server's address in one place, every
option of ``desktop_client.py --help`` is described, and ``licensechain-gateway --server
uvicorn`` starts without a deprecation warning."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from conftest import free_port
from test_quickstart import quickstart, quickstart_env

from flask_licensechain.config import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VENV_BIN = Path(sys.executable).parent


def _quickstart_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_example", EXAMPLES / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# -- the quickstart's banner ------------------------------------------------------------------


def test_the_banner_names_the_embedded_stores_and_what_they_mean_for_workers() -> None:
    text = "\n".join(_quickstart_module().stores_lines(Settings(), "sqlite"))
    assert "SQLite store; denylist in-process; rate limits in-process" in text
    assert "gunicorn -w N" in text
    assert "within 0.25 s" in text  # revocations still reach every worker, through the store
    assert "N times the budget" in text and "LICENSECHAIN_REDIS_URL" in text
    assert "one host" in text and "postgresql://" in text


def test_the_banner_names_redis_and_postgresql_when_configured() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0")
    text = "\n".join(_quickstart_module().stores_lines(settings, "postgresql"))
    assert "PostgreSQL store; denylist Redis; rate limits Redis" in text
    assert "milliseconds" in text and "one rate-limit budget" in text
    assert "N times" not in text and "one host" not in text
    split = Settings(redis_url="redis://127.0.0.1:6379/0", ratelimit_storage_url="memory://")
    assert "rate limits in-process" in _quickstart_module().stores_lines(split, "sqlite")[0]


@pytest.mark.slow
def test_step_2_runs_as_printed_and_takes_the_token_from_step_1(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("python3") is None:
        if os.environ.get("CI"):
            pytest.fail("curl and python3 are needed to run the printed shell lines")
        pytest.skip("curl or python3 is missing")
    env = quickstart_env(tmp_path / "instance", free_port())
    with quickstart(env) as started:
        out = started.output
        assert any("SQLite store; denylist in-process" in line for line in out)
        step2 = out[out.index("2. Introspect that token (TOKEN takes it from step 1's answer):") :]
        lines = [line.strip() for line in step2[1:] if line.strip()][:2]
        assert lines[0].startswith("TOKEN=$(curl ") and "<" not in lines[0]
        # With the docs extra (in dev), the quickstart serves and prints the API reference.
        (docs_line,) = [line for line in out if line.startswith("API reference (Swagger UI): ")]
        docs = httpx.get(docs_line.split(": ", 1)[1])
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        done = subprocess.run(
            ["bash", "-c", "\n".join(lines)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    answer = json.loads(done.stdout)
    assert answer["active"] is True and answer["features"] == ["export"]


# -- the legacy walkthrough's server address ------------------------------------------------


def test_the_gateway_example_says_where_the_server_address_lives() -> None:
    toml = (EXAMPLES / "legacy_service" / "gateway.toml").read_text("utf-8")
    values = [line for line in toml.splitlines() if ":5000" in line and not line.startswith("#")]
    assert [line.split("=")[0].strip() for line in values] == ["issuer", "jwks_url"]
    note = toml.split(values[0])[0]
    assert "LICENSECHAIN_ISSUER" in note and "LICENSECHAIN_JWKS_URL" in note
    readme = (EXAMPLES / "legacy_service" / "README.md").read_text("utf-8")
    commands = "\n".join(
        block.split("```", 1)[0] for block in readme.split("```sh\n")[1:]
    )  # the shell blocks the reader runs
    assert commands.count("127.0.0.1:5000") == 1, "one SERVER= line, then $SERVER"
    assert "SERVER=http://127.0.0.1:5000" in commands
    assert "LICENSECHAIN_ISSUER=$SERVER/v1" in commands
    assert "LICENSECHAIN_JWKS_URL=$SERVER/v1/licenses/jwks" in commands


# -- desktop_client.py --help ------------------------------------------------------------------


def test_every_desktop_client_option_is_described_with_its_default() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "desktop_client.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    options = done.stdout.split("options:", 1)[1]
    entries = re.findall(r"^  (-[^\n]*(?:\n {4,}[^\n]*)*)", options, flags=re.MULTILINE)
    assert len(entries) >= 10
    for entry in entries:
        flags, _, described = re.split(r"(\s{2,})", entry.strip(), maxsplit=1)[0:3]
        text = " ".join(described.split())
        assert len(text.split()) >= 3, f"{flags} is not described: {text!r}"
        takes_value = re.search(r"--[\w-]+ [A-Z_]+", flags) is not None
        if takes_value:
            assert "default" in text or "env " in text, f"{flags}: no default named: {text!r}"


# -- licensechain-gateway --server uvicorn -------------------------------------------------------


@pytest.mark.slow
def test_the_uvicorn_gateway_starts_without_a_deprecation_warning(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}), encoding="utf-8")
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'issuer = "https://licenses.test/v1"\naudience = "app_x"\njwks_file = "{jwks}"\n'
        f'[gateway]\nupstream = "http://127.0.0.1:{free_port()}"\n'
        f'bind = "127.0.0.1:{port}"\nworkers = 1\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSECHAIN_")}
    process = subprocess.Popen(
        [str(VENV_BIN / "licensechain-gateway"), "--config", str(config), "--server", "uvicorn"],
        env={**env, "PYTHONWARNINGS": "default"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_licensechain/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the gateway never answered")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "Uvicorn running" in stderr or "Application startup complete" in stderr, stderr
    assert "Deprecat" not in stderr, stderr
