"""``flask licensechain apps|licenses|devices ...``: administer from a shell.

Each command's ``--json`` answer is the API's object (or page) for the same thing; errors
are one JSON object under ``--json`` and one line on stderr otherwise, and a "not found"
names what was not found and the command that lists the candidates. State changes go
through the API's own path (the same 409 rules, revocation records and announcements) and
are audited as done by ``cli``; an expiry in the past asks first, or needs ``--yes``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from contract_fields import APP_FIELDS, LICENSE_FIELDS
from issuer_support import Issuer, close_issuer, make_issuer
from test_cli import assert_clean_error, assert_clean_json_error

from flask_licensechain.serialize import iso


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    yield made
    close_issuer(made)


def run(issuer: Issuer, *args: str, stdin: str | None = None) -> Result:
    return issuer.app.test_cli_runner().invoke(args=["licensechain", *args], input=stdin)


def run_json(issuer: Issuer, *args: str) -> dict[str, Any]:
    result = run(issuer, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def api(issuer: Issuer, path: str) -> Any:
    response = issuer.client.get(path, headers=issuer.auth())
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- apps -------------------------------------------------------------------------------


def test_apps_list_and_show_are_the_api_s_objects(issuer: Issuer) -> None:
    first, second = issuer.new_app(name="One"), issuer.new_app(name="Two", tier="free")
    listed = run_json(issuer, "apps", "list")
    assert listed["total"] == 2 and listed["page"] == 1
    assert [app["id"] for app in listed["apps"]] == [first.id, second.id]
    assert all(set(app) == set(APP_FIELDS) for app in listed["apps"])
    assert run_json(issuer, "apps", "show", second.id) == api(issuer, f"/v1/apps/{second.id}")
    human = run(issuer, "apps", "list")
    assert human.exit_code == 0
    assert first.id in human.stdout and "One" in human.stdout and "free" in human.stdout


def test_apps_list_pages(issuer: Issuer) -> None:
    ids = [issuer.new_app(name=f"App {n}").id for n in range(3)]
    page = run_json(issuer, "apps", "list", "--page", "2", "--limit", "2")
    assert [app["id"] for app in page["apps"]] == ids[2:]
    assert (page["total"], page["page"], page["limit"]) == (3, 2, 2)


def test_an_unknown_app_names_itself_and_the_listing_command(issuer: Issuer) -> None:
    result = run(issuer, "apps", "show", "app_123", "--json")
    assert_clean_json_error(
        result, "not_found", "App app_123 not found", "`flask licensechain apps list`"
    )
    assert_clean_error(run(issuer, "apps", "show", "app_123"), "App app_123 not found")
    listing = run(issuer, "licenses", "list", "--app", "app_123", "--json")
    assert_clean_json_error(listing, "not_found", "app_123", "apps list")


# -- licenses ---------------------------------------------------------------------------


def test_licenses_list_filters_by_app_status_and_email(issuer: Issuer) -> None:
    app, other = issuer.new_app(), issuer.new_app(name="Other")
    ada = issuer.new_license(app.id, issued_email="ada@example.com")
    bob = issuer.new_license(app.id, issued_email="bob@example.com")
    far = issuer.new_license(other.id, issued_email="ada@example.com")
    issuer.store.licenses.set_status(bob.id, "SUSPENDED")

    def ids(*args: str) -> set[str]:
        page = run_json(issuer, "licenses", "list", *args)
        assert set(page) == {"licenses", "total", "page", "limit"}
        assert page["total"] == len(page["licenses"]) or page["page"] > 1
        return {lic["id"] for lic in page["licenses"]}

    assert ids() == {ada.id, bob.id, far.id}
    assert ids("--app", app.id) == {ada.id, bob.id}
    assert ids("--status", "suspended") == {bob.id}
    assert ids("--email", "ADA@example.com") == {ada.id, far.id}
    assert ids("--email", "ada@example.com", "--app", other.id) == {far.id}
    assert ids("--status", "ACTIVE", "--page", "2") == set()
    assert run_json(issuer, "licenses", "list", "--app", app.id) == api(
        issuer, f"/v1/licenses?app_id={app.id}"
    )
    human = run(issuer, "licenses", "list", "--app", app.id)
    assert human.exit_code == 0 and ada.key in human.stdout and "SUSPENDED" in human.stdout


def test_licenses_list_refuses_an_unknown_status(issuer: Issuer) -> None:
    result = run(issuer, "licenses", "list", "--status", "GONE", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "usage_error"


def test_licenses_show_takes_the_id_or_the_key(issuer: Issuer) -> None:
    lic = issuer.new_license(features=["export"])
    by_id = run_json(issuer, "licenses", "show", lic.id)
    assert set(by_id) == set(LICENSE_FIELDS)
    assert by_id == run_json(issuer, "licenses", "show", lic.key.lower())
    assert by_id == api(issuer, f"/v1/licenses/{lic.id}")
    human = run(issuer, "licenses", "show", lic.key)
    assert human.exit_code == 0 and lic.id in human.stdout and "export" in human.stdout


def test_an_unknown_license_names_itself_and_the_listing_command(issuer: Issuer) -> None:
    result = run(issuer, "licenses", "show", "LC-AAAAAA-BBBBBB-CCCCCC", "--json")
    assert_clean_json_error(
        result,
        "not_found",
        "License LC-AAAAAA-BBBBBB-CCCCCC not found",
        "`flask licensechain licenses list`",
    )


# -- devices ----------------------------------------------------------------------------


def test_devices_list_shows_the_bound_devices(issuer: Issuer) -> None:
    lic = issuer.new_license(max_devices=2)
    issuer.token_for(lic.key, hwuid="pc-1")
    listed = run_json(issuer, "devices", "list", lic.key)
    assert listed["licenseId"] == lic.id and listed["maxDevices"] == 2
    assert [device["hwuid"] for device in listed["devices"]] == ["pc-1"]
    assert listed["devices"] == api(issuer, f"/v1/licenses/{lic.id}")["devices"]
    human = run(issuer, "devices", "list", lic.id)
    assert human.exit_code == 0 and "pc-1" in human.stdout and "1 of 2" in human.stdout
    missing = run(issuer, "devices", "list", "lic_nope", "--json")
    assert_clean_json_error(missing, "not_found", "License lic_nope not found", "licenses list")


# -- the commands are listed with their help ---------------------------------------------


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        ("apps", ("list", "show")),
        ("licenses", ("list", "show", "revoke", "suspend", "activate", "extend")),
        ("devices", ("list", "release")),
    ],
)
def test_each_group_lists_its_commands(issuer: Issuer, group: str, commands: tuple[str]) -> None:
    result = run(issuer, group, "--help")
    assert result.exit_code == 0
    for command in commands:
        assert command in result.stdout
        help_text = run(issuer, group, command, "--help")
        assert help_text.exit_code == 0 and "--json" in help_text.stdout


# -- state changes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "status"),
    [("revoke", "REVOKED"), ("suspend", "SUSPENDED")],
)
def test_revoke_and_suspend_refuse_outstanding_tokens_at_once(
    issuer: Issuer, command: str, status: str
) -> None:
    lic = issuer.new_license()
    token = issuer.token_for(lic.key)
    assert issuer.introspect(token)["active"] is True
    changed = run_json(issuer, "licenses", command, lic.key)
    assert changed["status"] == status and changed == api(issuer, f"/v1/licenses/{lic.id}")
    assert issuer.introspect(token) == {"active": False, "reason": f"license_{status.lower()}"}


def test_activate_lifts_a_suspension_and_a_revoked_license_stays_revoked(
    issuer: Issuer,
) -> None:
    lic = issuer.new_license()
    run_json(issuer, "licenses", "suspend", lic.id)
    assert run_json(issuer, "licenses", "activate", lic.id)["status"] == "ACTIVE"
    assert issuer.verify(key=lic.key).get_json()["valid"] is True
    run_json(issuer, "licenses", "revoke", lic.id, "--reason", "chargeback")
    refused = run(issuer, "licenses", "activate", lic.id, "--json")
    assert_clean_json_error(refused, "conflict", "revoked")


def test_extend_sets_the_expiry_and_a_past_date_asks_first(issuer: Issuer) -> None:
    lic = issuer.new_license()
    later = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    extended = run_json(issuer, "licenses", "extend", lic.key, "--expires-at", later.isoformat())
    assert extended["expiresAt"] == iso(later)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    # Under --json there is nobody to ask: --yes is required.
    refused = run(issuer, "licenses", "extend", lic.id, "--expires-at", past, "--json")
    assert_clean_json_error(refused, "confirmation_required", "in the past", "--yes")
    declined = run(issuer, "licenses", "extend", lic.id, "--expires-at", past, stdin="n\n")
    assert declined.exit_code == 1 and "in the past" in declined.output
    assert api(issuer, f"/v1/licenses/{lic.id}")["status"] == "ACTIVE"
    confirmed = run(issuer, "licenses", "extend", lic.id, "--expires-at", past, stdin="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert api(issuer, f"/v1/licenses/{lic.id}")["status"] == "EXPIRED"
    forced = run_json(issuer, "licenses", "extend", lic.id, "--expires-at", past, "--yes")
    assert forced["status"] == "EXPIRED"
    perpetual = run_json(issuer, "licenses", "extend", lic.id, "--perpetual")
    assert perpetual["expiresAt"] is None and perpetual["status"] == "ACTIVE"


def test_extend_needs_exactly_one_expiry(issuer: Issuer) -> None:
    lic = issuer.new_license()
    for args in ([], ["--perpetual", "--expires-at", "2030-01-01"]):
        result = run(issuer, "licenses", "extend", lic.id, *args, "--json")
        assert result.exit_code == 2 and json.loads(result.stdout)["error"] == "usage_error"
    bad = run(issuer, "licenses", "extend", lic.id, "--expires-at", "soon", "--json")
    assert_clean_json_error(bad, "invalid_request", "--expires-at")


def test_devices_release_frees_the_slot(issuer: Issuer) -> None:
    lic = issuer.new_license(max_devices=1)
    token = issuer.token_for(lic.key, hwuid="pc-1")
    assert issuer.verify(key=lic.key, hwuid="pc-2").get_json()["reason"] == ("hardware_id_mismatch")
    released = run_json(issuer, "devices", "release", lic.key, "pc-1")
    assert released["devices"] == []
    assert issuer.verify(key=lic.key, hwuid="pc-2").get_json()["valid"] is True
    assert issuer.introspect(token)["active"] is False  # released: its tokens are void
    again = run(issuer, "devices", "release", lic.key, "pc-1", "--json")
    assert_clean_json_error(again, "not_found", "pc-1", "`flask licensechain devices list")


def test_state_changes_are_audited_as_done_by_the_cli(issuer: Issuer) -> None:
    lic = issuer.new_license(max_devices=2)
    issuer.token_for(lic.key, hwuid="pc-1")
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    run_json(issuer, "licenses", "suspend", lic.id)
    run_json(issuer, "licenses", "activate", lic.id)
    run_json(issuer, "licenses", "extend", lic.id, "--expires-at", later)
    run_json(issuer, "devices", "release", lic.id, "pc-1")
    run_json(issuer, "licenses", "revoke", lic.id, "--reason", "refund")
    with issuer.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM lc_audit_events WHERE target = :t"), {"t": lic.id}
        ).mappings()
        # by the CLI: actor "cli" (or, with the audit chain, actor_kind "cli")
        seen = [row["action"] for row in rows if "cli" in (row["actor"], row.get("actor_kind"))]
    seen = ["device.release" if a == "license.device_release" else a for a in seen]
    for action in (
        "license.suspend",
        "license.activate",
        "license.extend",
        "device.release",
        "license.revoke",
    ):
        assert seen.count(action) == 1, (action, seen)  # once: never recorded twice


def test_the_readme_s_admin_commands_run_as_written(issuer: Issuer) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    block = readme.split("```sh\nflask --app app licensechain apps list", 1)[1].split("```")[0]
    lines = ["flask --app app licensechain apps list" + block.splitlines()[0]]
    lines += [line for line in block.splitlines()[1:] if line.strip()]
    assert len(lines) == 6, lines
    app = issuer.new_app()
    lic = issuer.new_license(app.id, issued_email="ada@example.com")
    placeholders = {"app_...": app.id, "LC-XXXXXX-XXXXXX-XXXXXX": lic.key, "KEY-OR-ID": lic.id}
    for line in lines:
        args = shlex.split(line.split("#", 1)[0])[4:]
        args = [placeholders.get(arg, arg) for arg in args]
        result = run(issuer, *args)
        assert result.exit_code == 0, (line, result.output)
    assert api(issuer, f"/v1/licenses/{lic.id}")["status"] == "REVOKED"
