"""``flask licensechain ...``: each command's JSON, its effect through the HTTP API, and its
errors (one line on stderr, exit 1, no traceback; under ``--json`` one JSON object on
stdout). Store-sensitive commands run on SQLite and PostgreSQL; one test runs the real
``flask`` executable in a subprocess."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import Result
from conftest import free_port
from contract_fields import APP_FIELDS, LICENSE_FIELDS
from flask import Flask
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain import LicenseChain
from flask_licensechain.cli import licensechain_cli
from flask_licensechain.command import LicenseChainCommand, LicenseChainGroup
from flask_licensechain.core.errors import NotFound
from flask_licensechain.state import get_issuer_state


@pytest.fixture(params=["sqlite", "postgres"])
def issuer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Issuer]:
    """An issuer app on SQLite, then on a fresh PostgreSQL database."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    made = make_issuer(tmp_path, url)
    yield made
    close_issuer(made)


@pytest.fixture
def sqlite_issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    yield made
    close_issuer(made)


def run(issuer: Issuer, *args: str) -> Result:
    return issuer.app.test_cli_runner().invoke(args=["licensechain", *args])


def run_json(issuer: Issuer, *args: str) -> dict[str, Any]:
    result = run(issuer, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    data = json.loads(result.stdout)  # the whole of stdout is exactly one JSON object
    assert isinstance(data, dict)
    return data


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Exit 1, a readable message on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def assert_json_error(
    stdout: str, stderr: str, exit_code: int, code: str, *fragments: str
) -> dict[str, Any]:
    """Under ``--json``: exit 1, and stdout is exactly one JSON error object
    ``{"error", "message"}``; stderr holds at most log lines, no error text, no traceback."""
    assert exit_code == 1, (stdout, stderr)
    assert "Error:" not in stderr and "Traceback" not in stderr
    error = json.loads(stdout)
    assert set(error) == {"error", "message"}
    assert error["error"] == code
    for fragment in fragments:
        assert fragment in error["message"]
    return dict(error)


def assert_clean_json_error(result: Result, code: str, *fragments: str) -> dict[str, Any]:
    assert isinstance(result.exception, SystemExit)
    return assert_json_error(result.stdout, result.stderr, result.exit_code, code, *fragments)


# -- the group --------------------------------------------------------------------------


def test_issuer_registers_the_group(sqlite_issuer: Issuer) -> None:
    assert sqlite_issuer.app.cli.commands["licensechain"] is licensechain_cli
    result = run(sqlite_issuer, "--help")
    assert result.exit_code == 0
    for command in ("init", "create-app", "create-license", "create-api-key", "rotate-keys"):
        assert command in result.stdout


# -- init -------------------------------------------------------------------------------


def test_init_is_idempotent_and_names_the_active_key(issuer: Issuer) -> None:
    first = run_json(issuer, "init")
    second = run_json(issuer, "init")
    assert first == second
    assert first["store"] == issuer.store.backend
    jwks = issuer.client.get("/v1/licenses/jwks").get_json()
    assert first["kid"] == jwks["keys"][0]["kid"]
    assert len(jwks["keys"]) == 1  # a second init made no second key


def test_init_human_output(sqlite_issuer: Issuer) -> None:
    result = run(sqlite_issuer, "init")
    assert result.exit_code == 0
    kid = sqlite_issuer.store.signing_keys.active().kid
    assert result.stdout.strip() == (
        f"LicenseChain store ready (sqlite); active signing key {kid}."
    )


# -- create-app -------------------------------------------------------------------------


def test_create_app_json_is_the_api_app_object(issuer: Issuer) -> None:
    data = run_json(
        issuer, "create-app", "--name", "Photo Tool", "--description", "Edits", "--tier", "pro"
    )
    assert set(data) == APP_FIELDS
    assert (data["name"], data["slug"], data["description"]) == (
        "Photo Tool",
        "photo-tool",
        "Edits",
    )
    assert (data["tier"], data["verificationType"]) == ("pro", "advanced")
    fetched = issuer.client.get(f"/v1/apps/{data['id']}", headers=issuer.auth())
    assert fetched.status_code == 200
    assert fetched.get_json() == data


def test_create_app_defaults_to_the_free_tier(sqlite_issuer: Issuer) -> None:
    data = run_json(sqlite_issuer, "create-app", "--name", "Tiny")
    assert (data["tier"], data["verificationType"], data["description"]) == ("free", "basic", None)


def test_create_app_human_output(sqlite_issuer: Issuer) -> None:
    result = run(sqlite_issuer, "create-app", "--name", "Human")
    assert result.exit_code == 0
    [app] = sqlite_issuer.store.apps.list()
    assert result.stdout.strip() == f"Created app 'Human': id {app.id}, tier free."


def test_create_app_rejects_a_blank_name_cleanly(sqlite_issuer: Issuer) -> None:
    before = sqlite_issuer.snapshot()
    assert_clean_error(run(sqlite_issuer, "create-app", "--name", "   "), "name")
    assert sqlite_issuer.snapshot() == before


def test_create_app_rejects_an_unknown_tier(sqlite_issuer: Issuer) -> None:
    result = run(sqlite_issuer, "create-app", "--name", "X", "--tier", "platinum")
    assert result.exit_code == 2  # click's usage error, listing the choices
    assert "platinum" in result.stderr and "enterprise" in result.stderr
    assert sqlite_issuer.store.apps.list() == []


# -- create-license ---------------------------------------------------------------------


def test_create_license_json_and_the_key_verifies(issuer: Issuer) -> None:
    app = run_json(issuer, "create-app", "--name", "Editor", "--tier", "business")
    data = run_json(
        issuer,
        "create-license",
        "--app-id",
        app["id"],
        "--plan",
        "pro",
        "--feature",
        "export",
        "--feature",
        "sync",
        "--expires-at",
        "2099-01-02T03:04:05+01:00",
        "--max-devices",
        "2",
        "--require-hwuid",
        "--email",
        "ada@example.com",
        "--issued-to",
        "Ada",
    )
    assert set(data) == LICENSE_FIELDS
    assert data["appId"] == app["id"]
    assert data["key"] == data["licenseKey"]
    assert (data["plan"], data["features"], data["status"]) == ("pro", ["export", "sync"], "ACTIVE")
    assert data["expiresAt"] == "2099-01-02T02:04:05.000Z"  # stored in UTC
    assert (data["maxDevices"], data["requireHwuid"]) == (2, True)
    assert (data["email"], data["issuedEmail"], data["issuedTo"]) == (
        "ada@example.com",
        "ada@example.com",
        "Ada",
    )
    assert data["devices"] == []

    # --require-hwuid is honoured; with a hardware id the key verifies and grants the features.
    refused = issuer.verify(key=data["key"]).get_json()
    assert refused == {"valid": False, "reason": "hardware_id_required", "status": "ACTIVE"}
    token = issuer.token_for(data["key"], hwuid="machine-1")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["aud"], claims["features"]) == (
        data["id"],
        app["id"],
        ["export", "sync"],
    )
    assert claims["lc_vt"] == "custom"


def test_create_license_defaults(sqlite_issuer: Issuer) -> None:
    app = run_json(sqlite_issuer, "create-app", "--name", "Defaults")
    data = run_json(sqlite_issuer, "create-license", "--app-id", app["id"])
    assert (data["plan"], data["features"], data["expiresAt"]) == (None, [], None)
    assert (data["maxDevices"], data["requireHwuid"], data["email"]) == (1, False, None)


def test_create_license_human_output(sqlite_issuer: Issuer) -> None:
    app = run_json(sqlite_issuer, "create-app", "--name", "H")
    result = run(sqlite_issuer, "create-license", "--app-id", app["id"])
    assert result.exit_code == 0
    [lic] = sqlite_issuer.store.licenses.list(app_id=app["id"])[0]
    assert result.stdout.strip() == (
        f"Created license {lic.key} (id {lic.id}) for app {app['id']}; expires: never."
    )


def test_create_license_for_a_missing_app_fails_cleanly(issuer: Issuer) -> None:
    before = issuer.snapshot()
    result = run(issuer, "create-license", "--app-id", "app_000000000000000000000000", "--json")
    assert_clean_json_error(result, "not_found", "App not found.")
    result = run(issuer, "create-license", "--app-id", "app_000000000000000000000000")
    assert_clean_error(result, "App not found.")
    assert issuer.snapshot() == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--expires-at", "next tuesday"], "--expires-at"),
        (["--expires-at", "2030-02-30"], "--expires-at"),
        (["--feature", ""], "feature"),
        (["--email", "x" * 400], "issued_email"),
    ],
)
def test_create_license_rejects_bad_values_cleanly(
    sqlite_issuer: Issuer, args: list[str], fragment: str
) -> None:
    app = run_json(sqlite_issuer, "create-app", "--name", "Bad values")
    before = sqlite_issuer.snapshot()
    result = run(sqlite_issuer, "create-license", "--app-id", app["id"], *args)
    assert_clean_error(result, fragment)
    assert sqlite_issuer.snapshot() == before


def test_create_license_rejects_zero_devices(sqlite_issuer: Issuer) -> None:
    result = run(sqlite_issuer, "create-license", "--app-id", "app_x", "--max-devices", "0")
    assert result.exit_code == 2
    assert "--max-devices" in result.stderr


# -- create-api-key ---------------------------------------------------------------------


def test_create_api_key_json_and_its_scopes_work(issuer: Issuer) -> None:
    data = run_json(
        issuer, "create-api-key", "--name", "reader", "--scope", "apps:read", "--scope", "apps:read"
    )
    assert set(data) == {"id", "key", "scopes"}
    assert data["key"].startswith("lc_live_")
    assert data["scopes"] == ["apps:read"]
    auth = {"Authorization": f"Bearer {data['key']}"}
    assert issuer.client.get("/v1/apps", headers=auth).status_code == 200
    denied = issuer.client.post("/v1/apps", headers=auth, json={"name": "nope"})
    assert denied.status_code == 403
    assert denied.get_json()["error"] == "insufficient_scope"


def test_create_api_key_is_stored_only_as_a_hash(sqlite_issuer: Issuer) -> None:
    data = run_json(sqlite_issuer, "create-api-key", "--name", "ci", "--scope", "*", "--test")
    assert data["key"].startswith("lc_test_")
    assert data["scopes"] == ["*"]
    assert data["key"] not in json.dumps(sqlite_issuer.snapshot())


def test_create_api_key_human_output_shows_the_key_once(sqlite_issuer: Issuer) -> None:
    result = run(sqlite_issuer, "create-api-key", "--name", "ops", "--scope", "keys:rotate")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Created API key key_") and lines[0].endswith("keys:rotate:")
    key = lines[1].strip()
    assert key.startswith("lc_live_")
    assert "cannot be shown again" in lines[2]
    rotate = sqlite_issuer.client.post(
        "/v1/signing-keys/rotate", headers={"Authorization": f"Bearer {key}"}
    )
    assert rotate.status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "x"],  # no scope
        ["--name", "x", "--scope", "root"],  # unknown scope
        ["--scope", "*"],  # no name
    ],
)
def test_create_api_key_usage_errors(sqlite_issuer: Issuer, args: list[str]) -> None:
    keys_before = len(sqlite_issuer.store.api_keys.list())
    result = run(sqlite_issuer, "create-api-key", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert len(sqlite_issuer.store.api_keys.list()) == keys_before


def test_cli_changes_are_audited(sqlite_issuer: Issuer) -> None:
    app = run_json(sqlite_issuer, "create-app", "--name", "Audited")
    event = sqlite_issuer.store.audit.list()[0]
    assert (event.action, event.actor_kind, event.target) == ("app.create", "cli", app["id"])
    assert event.actor == getpass.getuser()  # the OS user who ran the command


# -- rotate-keys ------------------------------------------------------------------------


def test_rotate_keys_keeps_old_tokens_valid(issuer: Issuer) -> None:
    lic = issuer.new_license()
    old_token = issuer.token_for(lic.key)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    data = run_json(issuer, "rotate-keys")
    assert set(data) == {"kid", "previousKid", "previousKeyExpiresAt"}
    assert data["previousKid"] == old_kid
    assert data["kid"] != old_kid
    assert data["previousKeyExpiresAt"].endswith("Z")
    kids = [k["kid"] for k in issuer.client.get("/v1/licenses/jwks").get_json()["keys"]]
    assert kids == [data["kid"], old_kid]  # the active key first
    new_token = issuer.token_for(lic.key)
    assert jwt.get_unverified_header(new_token)["kid"] == data["kid"]
    for token in (old_token, new_token):
        assert issuer.introspect(token)["active"] is True


def test_rotate_keys_human_output(sqlite_issuer: Issuer) -> None:
    old = sqlite_issuer.store.signing_keys.active().kid
    result = run(sqlite_issuer, "rotate-keys")
    assert result.exit_code == 0
    new = sqlite_issuer.store.signing_keys.active().kid
    assert result.stdout.startswith(f"New active signing key {new}. {old} stays in the JWKS until")


# -- modes and processes ----------------------------------------------------------------


def test_integrator_mode_has_nothing_to_administer(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    app = Flask("integrator", instance_path=str(tmp_path / "instance"))
    LicenseChain(app, jwks_file=str(jwks), audience="app_1")
    app.cli.add_command(licensechain_cli)
    result = app.test_cli_runner().invoke(args=["licensechain", "init", "--json"])
    assert_clean_json_error(result, "command_failed", "integrator mode")
    result = app.test_cli_runner().invoke(args=["licensechain", "init"])
    assert_clean_error(result, "integrator mode")


def test_an_app_without_the_extension_gets_a_clear_error(tmp_path: Path) -> None:
    app = Flask("bare", instance_path=str(tmp_path / "instance"))
    app.cli.add_command(licensechain_cli)
    result = app.test_cli_runner().invoke(args=["licensechain", "rotate-keys"])
    assert_clean_error(result, "LicenseChain is not registered")


APP_MODULE = """
import os

from flask import Flask
from flask_licensechain import LicenseChain

app = Flask(__name__, instance_path={instance!r})
app.config["LICENSECHAIN_ISSUER"] = "https://licenses.example.test/v1"
app.config.update({{k: v for k, v in os.environ.items() if k.startswith("LICENSECHAIN_")}})
LicenseChain(app)
"""


def flask_in(directory: Path, **environ: str) -> Any:
    """Runs ``flask --app cli_app licensechain ...`` in ``directory`` as a separate process."""
    (directory / "cli_app.py").write_text(
        textwrap.dedent(APP_MODULE.format(instance=str(directory / "instance")))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LICENSECHAIN_", "FLASK_"))}
    env.update(environ)

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "cli_app", "licensechain", *args],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return flask


def test_the_flask_executable_runs_the_commands(tmp_path: Path) -> None:
    """Through ``flask --app``, as a user would: separate processes sharing one SQLite store."""
    flask = flask_in(tmp_path)
    init = flask("init", "--json")
    assert init.returncode == 0, init.stderr
    kid = json.loads(init.stdout)["kid"]
    app = json.loads(flask("create-app", "--name", "Proc", "--json").stdout)
    lic = json.loads(flask("create-license", "--app-id", app["id"], "--json").stdout)
    key = json.loads(flask("create-api-key", "--name", "p", "--scope", "*", "--json").stdout)
    assert lic["appId"] == app["id"] and key["key"].startswith("lc_live_")
    rotated = json.loads(flask("rotate-keys", "--json").stdout)
    assert rotated["previousKid"] == kid

    failed = flask("create-license", "--app-id", "app_missing", "--json")
    assert_json_error(
        failed.stdout, failed.stderr, failed.returncode, "not_found", "App not found."
    )
    failed = flask("create-license", "--app-id", "app_missing")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "Error: App not found." in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.parametrize(
    ("environ", "code", "message"),
    [
        (
            {"LICENSECHAIN_DATABASE_URL": "postgresql://postgres@127.0.0.1:{port}/none"},
            "command_failed",
            "LICENSECHAIN_ENCRYPTION_KEY is required with a postgresql store",
        ),
        (
            {
                "LICENSECHAIN_DATABASE_URL": "postgresql://postgres@127.0.0.1:{port}/none",
                "LICENSECHAIN_ENCRYPTION_KEY": "A" * 43,
            },
            "unavailable",
            "The service is temporarily unavailable. OperationalError",
        ),
        # refused as the setting, before a stored key could hide it until the next rotation
        (
            {"LICENSECHAIN_KEY_SIZE": "1024"},
            "command_failed",
            "LICENSECHAIN_KEY_SIZE must be one of",
        ),
    ],
    ids=["no-encryption-key", "store-down", "bad-key-size"],
)
def test_an_app_that_cannot_start_is_one_clear_line(
    tmp_path: Path, environ: dict[str, str], code: str, message: str
) -> None:
    """Errors raised while the app loads (configuration, a dead store) are reported by the
    command like any other: one line on stderr, exit 1, no traceback; under ``--json``, one
    JSON object on stdout."""
    port = str(free_port())  # nothing listens there
    flask = flask_in(tmp_path, **{k: v.format(port=port) for k, v in environ.items()})
    result = flask("init")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Error: " + message in result.stderr
    assert "Traceback" not in result.stderr
    result = flask("init", "--json")
    assert_json_error(result.stdout, result.stderr, result.returncode, code, message)


def test_usage_errors_under_json_are_json(sqlite_issuer: Issuer) -> None:
    result = run(sqlite_issuer, "create-api-key", "--name", "x", "--json")  # no --scope
    assert result.exit_code == 2
    assert result.stderr == ""
    error = json.loads(result.stdout)
    assert error["error"] == "usage_error"
    assert "--scope" in error["message"]


def test_commands_are_importable_module_level_objects() -> None:
    from flask_licensechain import cli

    names = {
        "init": cli.init,
        "create-app": cli.create_app,
        "create-license": cli.create_license,
        "create-api-key": cli.create_api_key,
        "rotate-keys": cli.rotate_keys,
    }
    for name, command in names.items():
        assert licensechain_cli.commands[name] is command
        assert isinstance(command, LicenseChainCommand)


def test_a_group_from_another_module_reports_errors_alike(sqlite_issuer: Issuer) -> None:
    """Another module's group, added with one ``add_command``: JSON errors, app context."""
    extra = LicenseChainGroup("extra-test", help="A group added by another module.")

    @extra.command("fail")
    def fail(as_json: bool) -> None:
        assert get_issuer_state() is sqlite_issuer.state  # runs in the app's context
        raise NotFound("Nothing here.")

    licensechain_cli.add_command(extra)
    try:
        result = run(sqlite_issuer, "extra-test", "fail", "--json")
        assert_clean_json_error(result, "not_found", "Nothing here.")
        assert_clean_error(run(sqlite_issuer, "extra-test", "fail"), "Nothing here.")
    finally:
        del licensechain_cli.commands["extra-test"]
