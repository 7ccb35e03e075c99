"""README.md stays true: its two opening commands, its snippets and its configuration table."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from flask_licensechain.config import settings_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_configuration_table_matches_the_settings() -> None:
    start = README.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = README.index("<!-- settings-table:end -->")
    assert README[start:end].strip() == settings_table().strip(), (
        "README's table is stale: paste flask_licensechain.config.settings_table()"
    )


def test_ci_runs_the_readme_test_command() -> None:
    opening = README.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(opening) == 2 and "pytest" in opening[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert opening[1] in ci.splitlines()


def test_middleware_readme_describes_shared_options_once() -> None:
    import dataclasses

    from licensechain_middleware import GateConfig

    from flask_licensechain.core.options import SHARED_OPTIONS

    text = (ROOT / "middleware" / "licensechain_middleware" / "README.md").read_text("utf-8")
    shared = text.split("<!-- shared-options:start -->")[1].split("<!-- shared-options:end -->")[0]
    listed = {name.strip().strip("`") for name in shared.strip().split(",")}
    assert listed == set(SHARED_OPTIONS)
    table = text.split("<!-- gate-options:start -->")[1].split("<!-- gate-options:end -->")[0]
    rows = {
        name.strip().strip("`")
        for line in table.strip().splitlines()[2:]
        for name in line.split("|")[1].split("/")
    }
    gate_fields = {f.name for f in dataclasses.fields(GateConfig)}
    assert rows == gate_fields - set(SHARED_OPTIONS), "each gate-only option once, no shared one"
    assert set(SHARED_OPTIONS) <= gate_fields


def _python_block(text: str, marker: str) -> str:
    """The README's ```python block that contains ``marker``."""
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    (block,) = [block for block in blocks if marker in block]
    return block


def _flask(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "LICENSECHAIN_"))}
    flask = Path(sys.executable).with_name("flask")
    return subprocess.run(
        [str(flask), "--app", "app", "licensechain", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_license_server_snippet_and_its_cli_commands_run_as_written(tmp_path: Path) -> None:
    """The server snippet (on the embedded defaults) and the CLI lines after it, in order,
    outside debug: the snippet names the issuer that such a start requires."""
    snippet = _python_block(README, "LicenseChain(app)  # or:")
    embedded = "".join(
        line + "\n"
        for line in snippet.splitlines()
        if "DATABASE_URL" not in line and "REDIS_URL" not in line
    )
    no_issuer = "".join(line + "\n" for line in embedded.splitlines() if "ISSUER" not in line)
    (tmp_path / "app.py").write_text(no_issuer, encoding="utf-8")
    refused = _flask(tmp_path, "init", "--json")
    # under --json the error is one JSON object on stdout, like every answer
    assert refused.returncode != 0, refused
    assert "LICENSECHAIN_ISSUER" in json.loads(refused.stdout)["message"], refused
    (tmp_path / "app.py").write_text(embedded, encoding="utf-8")
    commands = README.split("```sh\nflask --app app licensechain init", 1)[1].split("```", 1)[0]
    lines = ["flask --app app licensechain init" + commands.splitlines()[0]]
    lines += [line for line in commands.splitlines()[1:] if "licensechain" in line]
    assert len(lines) == 6, lines
    app_id = ""
    for line in lines:
        args = shlex.split(line.split("#", 1)[0])[4:]
        args = [app_id if arg == "app_..." else arg for arg in args]
        done = _flask(tmp_path, *args)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        if args[0] == "create-app":
            app_id = json.loads(done.stdout)["id"]
    assert app_id.startswith("app_")


def test_in_app_gate_snippet_runs_as_written() -> None:
    namespace: dict[str, object] = {"__name__": "readme_snippet"}
    exec(_python_block(README, '@requires_feature("export")  # also'), namespace)  # as is
    app = namespace["app"]
    assert isinstance(app, Flask)
    response = app.test_client().get("/reports/export")
    assert response.status_code == 401
    assert response.json == {**(response.json or {}), "reason": "missing"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="licensechain"'


@pytest.mark.parametrize(
    "source",
    ["README.md", "middleware/licensechain_middleware/README.md"],
)
def test_middleware_snippet_issuer_is_the_api_base_url(source: str) -> None:
    """A gate's ``issuer`` is the API base URL the server puts in ``iss`` (``.../v1``)."""
    snippet = _python_block((ROOT / source).read_text("utf-8"), "GateConfig(")
    issuer = snippet.split('issuer="', 1)[1].split('"', 1)[0]
    jwks_url = snippet.split('jwks_url="', 1)[1].split('"', 1)[0]
    assert jwks_url == issuer + "/licenses/jwks"


def test_middleware_snippet_runs_as_written() -> None:
    app = Flask(__name__)
    app.add_url_rule("/health", "health", lambda: {"status": "ok"})
    app.add_url_rule("/reports/<name>", "report", lambda name: {"name": name})
    namespace: dict[str, object] = {"app": app}
    exec(_python_block(README, "GateConfig("), namespace)  # the README snippet itself
    client = app.test_client()
    assert client.get("/health").status_code == 200
    refused = client.get("/reports/q1")
    assert refused.status_code == 401 and (refused.json or {})["reason"] == "missing"
