"""The service layer: every state change records its audit event in its own transaction.

If the audit write fails, the change fails and no row changes (API, CLI and the console's
own changes, SQLite and PostgreSQL), and nothing is announced to the denylist. Each event
names its actor (the API key's id and name, ``cli`` with the OS user, the license's client
on verify), the request id, the client IP and the user agent.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from click.testing import Result
from console_support import (
    PASSWORD,
    Person,
    create_person,
    make_console_app,
    post_form,
    session_cookie_for,
    signed_in_client,
)
from flask import Flask
from flask.testing import FlaskClient
from issuer_support import Issuer, close_issuer, make_issuer, snapshot
from werkzeug.test import TestResponse

from flask_licensechain.console import mfa
from flask_licensechain.console.repository import WebAuthnCredential
from flask_licensechain.console.sessions import hash_session_id
from flask_licensechain.console.state import console_state
from flask_licensechain.store import AuditRecord

pytest_plugins = ["issuer_fixtures"]

#: an API call: (issuer, app id, license) -> response
Call = Callable[[Issuer, str, Any], TestResponse]


def refuse_audit_writes(engine: sa.Engine) -> None:
    """From now on every insert into the audit table fails (the table stays readable)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER lc_test_refuse_audit BEFORE INSERT ON lc_audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "ALTER TABLE lc_audit_events ADD CONSTRAINT lc_test_refuse_audit "
                "CHECK (action = 'never') NOT VALID"
            )


def run_cli(issuer: Issuer, *args: str) -> Result:
    return issuer.app.test_cli_runner().invoke(args=["licensechain", *args, "--json"])


def _patch(path: str, body: dict[str, Any] | None = None) -> Call:
    def call(issuer: Issuer, app_id: str, lic: Any) -> TestResponse:
        url = path.format(app=app_id, lic=lic.id)
        return issuer.client.patch(url, json=body or {}, headers=issuer.auth())

    return call


API_CHANGES: dict[str, tuple[str, Call]] = {
    "create app": (
        "app.create",
        lambda i, a, lic: i.post("/v1/apps", {"name": "New"}, headers=i.auth()),
    ),
    "update app": ("app.update", _patch("/v1/apps/{app}", {"name": "Renamed"})),
    "delete app": (
        "app.delete",
        lambda i, a, lic: i.client.delete(f"/v1/apps/{_empty_app(i)}", headers=i.auth()),
    ),
    "create license": (
        "license.create",
        lambda i, a, lic: i.post(f"/v1/apps/{a}/licenses", {"plan": "pro"}, headers=i.auth()),
    ),
    "update license": ("license.update", _patch("/v1/licenses/{lic}", {"plan": "basic"})),
    "suspend": ("license.suspend", _patch("/v1/licenses/{lic}/suspend")),
    "revoke": ("license.revoke", _patch("/v1/licenses/{lic}/revoke", {"reason": "refund"})),
    "extend": (
        "license.extend",
        _patch("/v1/licenses/{lic}/extend", {"expiresAt": "2040-01-01T00:00:00Z"}),
    ),
    "release device": (
        "device.release",
        lambda i, a, lic: i.client.delete(f"/v1/licenses/{lic.id}/devices/m1", headers=i.auth()),
    ),
    "revoke token": (
        "token.revoke",
        lambda i, a, lic: i.post("/v1/licenses/revoke-token", {"jti": "j" * 22}, headers=i.auth()),
    ),
    "rotate signing key": (
        "signing_key.rotate",
        lambda i, a, lic: i.post("/v1/signing-keys/rotate", headers=i.auth()),
    ),
    "bind device on verify": (
        "device.bind",
        lambda i, a, lic: i.verify(key=lic.key, hwuid="m2"),
    ),
}


def _empty_app(issuer: Issuer) -> str:
    return next(app.id for app in issuer.store.apps.list() if app.name == "Empty")


@pytest.fixture
def prepared(issuer: Issuer) -> Iterator[tuple[Issuer, str, Any]]:
    """An issuer with an app, a license of it that has one bound device (``m1``), and an
    app without licenses (``Empty``)."""
    app = issuer.new_app()
    issuer.new_app(name="Empty")
    lic = issuer.new_license(app.id, max_devices=3)
    assert issuer.verify(key=lic.key, hwuid="m1").get_json()["valid"] is True
    yield issuer, app.id, lic


def _events(issuer: Issuer) -> list[AuditRecord]:
    events: list[AuditRecord] = issuer.store.audit.list()
    return events


@pytest.mark.parametrize("name", sorted(API_CHANGES))
def test_each_api_change_records_its_action(prepared: tuple[Issuer, str, Any], name: str) -> None:
    issuer, app_id, lic = prepared
    action, call = API_CHANGES[name]
    before = {e.id for e in _events(issuer)}
    response = call(issuer, app_id, lic)
    assert response.status_code < 300, response.get_json()
    new = [e for e in _events(issuer) if e.id not in before]
    assert [e.action for e in new] == [action]


@pytest.mark.parametrize("name", sorted(API_CHANGES))
def test_a_failed_audit_write_fails_the_api_change(
    prepared: tuple[Issuer, str, Any], name: str
) -> None:
    issuer, app_id, lic = prepared
    _, call = API_CHANGES[name]
    token = issuer.token_for(lic.key, hwuid="m1")
    refuse_audit_writes(issuer.store.engine)
    before = issuer.snapshot()
    response = call(issuer, app_id, lic)
    assert response.status_code >= 400
    assert response.get_json()["error"] in ("conflict", "unavailable", "internal_error")
    assert issuer.snapshot() == before  # no row changed, no audit event
    # nothing was announced: the license's token still passes every gate
    assert issuer.introspect(token)["active"] is True


@pytest.mark.parametrize(
    "args",
    [
        ("create-app", "--name", "Refused"),
        ("create-license", "--app-id", "{app}"),
        ("rotate-keys",),
    ],
    ids=["create-app", "create-license", "rotate-keys"],
)
def test_a_failed_audit_write_fails_the_cli_change(
    prepared: tuple[Issuer, str, Any], args: tuple[str, ...]
) -> None:
    issuer, app_id, _ = prepared
    refuse_audit_writes(issuer.store.engine)
    before = issuer.snapshot()
    result = run_cli(issuer, *(arg.format(app=app_id) for arg in args))
    assert result.exit_code == 1, result.stdout
    assert '"error"' in result.stdout
    assert issuer.snapshot() == before


# -- who acted -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_prepared(tmp_path: Path) -> Iterator[tuple[Issuer, str, Any]]:
    made = make_issuer(tmp_path)
    try:
        app = made.new_app()
        yield made, app.id, made.new_license(app.id, max_devices=2)
    finally:
        close_issuer(made)


def test_an_api_change_names_the_key_the_request_id_ip_and_user_agent(
    sqlite_prepared: tuple[Issuer, str, Any],
) -> None:
    issuer, _, lic = sqlite_prepared
    key = issuer.store.api_keys.authenticate(issuer.admin_key)
    response = issuer.client.patch(
        f"/v1/licenses/{lic.id}",
        json={"plan": "gold", "issuedEmail": "ann@example.com"},
        headers={**issuer.auth(), "X-Request-ID": "req-audit-1", "User-Agent": "curl/8.5"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 200, response.get_json()
    event = _events(issuer)[0]
    assert (event.action, event.target, event.app_id) == ("license.update", lic.id, lic.app_id)
    assert (event.actor_kind, event.actor, event.actor_name) == ("api_key", key.id, "admin")
    assert event.request_id == "req-audit-1" == response.headers["X-Request-ID"]
    assert (event.actor_ip, event.actor_user_agent) == ("203.0.113.7", "curl/8.5")
    # the changed fields before and after; personal data apart from the chained data
    assert event.data == {"changes": {"plan": [None, "gold"]}, "personalFields": ["issued_email"]}
    assert event.personal == {"changes": {"issued_email": [None, "ann@example.com"]}}
    assert "ann@example.com" not in str(event.data)


def test_a_cli_change_names_cli_and_the_os_user(sqlite_prepared: tuple[Issuer, str, Any]) -> None:
    issuer, app_id, _ = sqlite_prepared
    result = run_cli(issuer, "create-license", "--app-id", app_id, "--email", "bo@example.com")
    assert result.exit_code == 0, result.stdout
    event = _events(issuer)[0]
    assert event.action == "license.create"
    assert (event.actor_kind, event.actor, event.actor_name) == ("cli", getpass.getuser(), "cli")
    assert event.request_id is None and event.actor_ip is None
    assert event.personal == {"issued_email": "bo@example.com"}
    assert "bo@example.com" not in str(event.data)


def test_a_new_binding_on_verify_names_the_license_client(
    sqlite_prepared: tuple[Issuer, str, Any],
) -> None:
    issuer, _, lic = sqlite_prepared
    headers = {"X-Request-ID": "req-bind-1", "User-Agent": "sdk/1.0"}
    environ = {"REMOTE_ADDR": "198.51.100.4"}
    for _ in range(3):  # the same device again: bound once, recorded once
        response = issuer.client.post(
            "/v1/licenses/verify",
            json={"key": lic.key, "hwuid": "machine-1"},
            headers=headers,
            environ_base=environ,
        )
        assert response.get_json()["valid"] is True
    events = [e for e in _events(issuer) if e.action == "device.bind"]
    assert len(events) == 1
    event = events[0]
    assert (event.actor_kind, event.actor, event.target) == ("client", lic.id, lic.id)
    assert (event.request_id, event.actor_ip, event.actor_user_agent) == (
        "req-bind-1",
        "198.51.100.4",
        "sdk/1.0",
    )
    assert event.personal == {"hwuid": "machine-1"} and event.data == {"devices": 1}


def test_a_status_change_in_an_update_is_one_unit(
    sqlite_prepared: tuple[Issuer, str, Any],
) -> None:
    """PATCH with a status and fields: one unit, both events (the status change first)."""
    issuer, _, lic = sqlite_prepared
    response = issuer.client.patch(
        f"/v1/licenses/{lic.id}", json={"status": "suspended", "plan": "x"}, headers=issuer.auth()
    )
    assert response.status_code == 200
    newest_first = [(e.action, e.data) for e in _events(issuer)][:2]
    assert newest_first == [
        ("license.update", {"changes": {"plan": [None, "x"]}, "personalFields": []}),
        ("license.suspend", {"changes": {"status": ["ACTIVE", "SUSPENDED"]}}),
    ]


# -- the console's own changes (users, second factors, sessions) ----------------------------
#
# Found in review: the console wrote these through its repository, each in its own
# transaction, then the audit line apart, logging and swallowing a failed audit write: the
# change stayed, unrecorded. Now each is one unit of work with its event.


@dataclass
class Console:
    app: Flask
    owner: FlaskClient
    person: Person  # the signed-in owner
    other: Person  # another user, with a second session (``other_session``)
    other_session: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Console]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    app = make_console_app(tmp_path, url)
    app.testing = False  # an unhandled error answers 500 here instead of raising
    client, person = signed_in_client(app, "owner")
    other = create_person(app, "developer")
    yield Console(app, client, person, other, session_cookie_for(app, other))
    console_state(app).store.dispose()


#: a console change: ``prepare`` makes what it needs that is not the change itself (a
#: passkey, a pending TOTP secret, a second session) and returns the form to post: (path,
#: data, page the CSRF token is read from)
Prepare = Callable[[Console], tuple[str, dict[str, str], str]]


def _post(path: str, data: dict[str, str] | None = None, page: str = "/console/account") -> Prepare:
    def prepare(c: Console) -> tuple[str, dict[str, str], str]:
        return path.format(other=c.other.user.id), data or {}, page

    return prepare


def _new_passkey(c: Console) -> str:
    state = console_state(c.app)
    state.repo.add_credential(
        WebAuthnCredential(
            id="Y3JlZC0x",
            user_id=c.person.user.id,
            name="Desk key",
            public_key=b"k",
            sign_count=0,
            transports=(),
            created_at=state.clock(),
            last_used_at=None,
        )
    )
    return "Y3JlZC0x"


def _passkey_removal(c: Console) -> tuple[str, dict[str, str], str]:
    return f"/console/account/passkeys/{_new_passkey(c)}/remove", {}, "/console/account"


def _totp_confirmation(c: Console) -> tuple[str, dict[str, str], str]:
    """The owner enrols a new authenticator app: the pending secret is written when the
    page is shown (no event yet); the code confirms it (the change)."""
    state = console_state(c.app)
    user_id = c.person.user.id
    state.repo.update_user(user_id, now=state.clock(), totp_enabled=False, totp_secret=None)
    _new_passkey(c)  # the second factor the owner keeps meanwhile
    assert c.owner.get("/console/account/totp").status_code == 200
    user = state.repo.get_user(user_id)
    assert user is not None
    secret = mfa.open_totp_secret(state, user)
    assert secret is not None
    code = pyotp.TOTP(secret).at(state.clock())
    return "/console/account/totp", {"code": code}, "/console/account/totp"


def _session_revocation(c: Console) -> tuple[str, dict[str, str], str]:
    handle = hash_session_id(session_cookie_for(c.app, c.person))[:16]
    return f"/console/account/sessions/{handle}/revoke", {}, "/console/account"


NEW_PASSWORD = "a new and rather long passphrase 42"

CONSOLE_CHANGES: dict[str, tuple[str, Prepare]] = {
    "create user": (
        "console.user_created",
        _post("/console/users", {"email": "new@example.test", "role": "support"}, "/console/users"),
    ),
    "role change": (
        "console.user_role_changed",
        _post("/console/users/{other}/role", {"role": "readonly"}, "/console/users"),
    ),
    "disable user": (
        "console.user_disabled",
        _post("/console/users/{other}/disable", page="/console/users"),
    ),
    "new setup link": (
        "console.setup_link_issued",
        _post("/console/users/{other}/setup-link", page="/console/users"),
    ),
    "totp enrol confirmation": ("console.mfa_totp_enabled", _totp_confirmation),
    "backup-code regeneration": (
        "console.backup_codes_generated",
        _post("/console/account/backup-codes"),
    ),
    "passkey removal": ("console.mfa_passkey_removed", _passkey_removal),
    "session revocation": ("console.session_revoked", _session_revocation),
    "revoke all sessions": (
        "console.sessions_revoked_all",
        _post("/console/account/sessions/revoke-all"),
    ),
    "password change": (
        "console.password_changed",
        _post(
            "/console/account/password",
            {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        ),
    ),
}


def _change(c: Console, prepared: tuple[str, dict[str, str], str]) -> TestResponse:
    path, data, page = prepared
    return post_form(c.owner, path, data, page=page)


@pytest.mark.parametrize("name", sorted(CONSOLE_CHANGES))
def test_each_console_change_records_its_action(console: Console, name: str) -> None:
    action, prepare = CONSOLE_CHANGES[name]
    prepared = prepare(console)
    audit = console_state(console.app).store.audit
    before = {e.id for e in audit.list()}
    response = _change(console, prepared)
    assert response.status_code < 400, response.get_data(as_text=True)
    new = [e for e in audit.list() if e.id not in before]
    assert action in [e.action for e in new]
    for event in new:  # personal data stays out of the chained part
        for personal in ("@example.test", "Desk key"):
            assert personal not in json.dumps(event.data), (event.action, event.data)


@pytest.mark.parametrize("name", sorted(CONSOLE_CHANGES))
def test_a_failed_audit_write_fails_the_console_change(console: Console, name: str) -> None:
    _, prepare = CONSOLE_CHANGES[name]
    prepared = prepare(console)
    refuse_audit_writes(console_state(console.app).store.engine)
    before = snapshot(console_state(console.app).store.engine)
    response = _change(console, prepared)
    assert response.status_code >= 400, response.get_data(as_text=True)
    assert (
        snapshot(console_state(console.app).store.engine) == before
    )  # no row changed, no audit event
