"""Account security through the test client: the last second factor stays, passkeys are
renamed and removed by their owner only, password changes end the other sessions, role
changes and disabling end the person's sessions, and each of these is an audit event."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from console_support import (
    Clock,
    create_person,
    make_console_app,
    post_form,
    sign_in,
    signed_in_client,
)
from flask import Flask

from flask_licensechain.console.repository import WebAuthnCredential
from flask_licensechain.console.state import console_state
from flask_licensechain.services import users
from flask_licensechain.store import Actor


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Flask:
    return make_console_app(tmp_path, clock=clock)


def _actions(app: Flask) -> list[str]:
    return [e.action for e in console_state(app).store.audit.list(limit=500)]


def _passkey(app: Flask, user_id: str, name: str = "Key") -> WebAuthnCredential:
    credential = WebAuthnCredential(
        id=f"cred-{user_id}-{name}".replace(" ", "-"),
        user_id=user_id,
        name=name,
        public_key=b"\x01",
        sign_count=0,
        transports=(),
        created_at=datetime.now(UTC),
        last_used_at=None,
    )
    console_state(app).repo.add_credential(credential)
    return credential


def test_the_last_second_factor_cannot_be_removed(app: Flask) -> None:
    client, person = signed_in_client(app, "owner")
    response = post_form(client, "/console/account/totp/disable", page="/console/account")
    assert response.status_code == 302
    assert console_state(app).repo.get_user(person.user.id).totp_enabled
    key = _passkey(app, person.user.id)
    post_form(client, "/console/account/totp/disable", page="/console/account")
    assert not console_state(app).repo.get_user(person.user.id).totp_enabled
    # Now the passkey is the last one.
    post_form(client, f"/console/account/passkeys/{key.id}/remove", page="/console/account")
    assert console_state(app).repo.credentials(person.user.id) == [key]
    assert "console.mfa_totp_disabled" in _actions(app)


def test_passkeys_are_renamed_and_removed_by_their_owner_only(app: Flask) -> None:
    client, person = signed_in_client(app, "admin")
    mine = _passkey(app, person.user.id, "Old name")
    stranger = create_person(app, "admin")
    theirs = _passkey(app, stranger.user.id, "Theirs")
    post_form(
        client,
        f"/console/account/passkeys/{mine.id}/rename",
        {"name": '<b>Yubi</b>"'},
        page="/console/account",
    )
    html = client.get("/console/account").get_data(as_text=True)
    assert "&lt;b&gt;Yubi&lt;/b&gt;" in html and "<b>Yubi" not in html
    assert (
        post_form(
            client, f"/console/account/passkeys/{theirs.id}/remove", page="/console/account"
        ).status_code
        == 404
    )
    assert (
        post_form(
            client,
            f"/console/account/passkeys/{theirs.id}/rename",
            {"name": "x"},
            page="/console/account",
        ).status_code
        == 404
    )
    post_form(client, f"/console/account/passkeys/{mine.id}/remove", page="/console/account")
    assert console_state(app).repo.credentials(person.user.id) == []
    assert console_state(app).repo.credentials(stranger.user.id) == [theirs]
    assert {"console.mfa_passkey_renamed", "console.mfa_passkey_removed"} <= set(_actions(app))


def test_password_change_ends_the_other_sessions(app: Flask) -> None:
    person = create_person(app, "developer")
    mine, _ = signed_in_client(app, person=person)
    other, _ = signed_in_client(app, person=person)
    before = mine.get_cookie("lc_console").value
    new = "another long passphrase here"
    wrong = post_form(
        mine,
        "/console/account/password",
        {"current": "not it at all", "password": new, "confirm": new},
        page="/console/account",
    )
    assert wrong.status_code == 400
    done = post_form(
        mine,
        "/console/account/password",
        {"current": person.password, "password": new, "confirm": new},
        page="/console/account",
    )
    assert done.status_code == 302
    assert mine.get_cookie("lc_console").value != before
    assert mine.get("/console/account").status_code == 200
    assert other.get("/console/account").status_code == 302
    person.password = new
    assert sign_in(app.test_client(), app, person).status_code == 302
    assert "console.password_changed" in _actions(app)


def test_role_change_and_disabling_end_the_sessions(app: Flask) -> None:
    state = console_state(app)
    client, person = signed_in_client(app, "admin")
    owner = Actor(kind="console", id="usr_owner", name="owner")
    users.set_role(state, owner, person.user, "readonly")
    assert client.get("/console/account").status_code == 302
    client, _ = signed_in_client(app, person=person)
    assert "readonly" in client.get("/console/account").get_data(as_text=True)
    users.set_disabled(state, owner, person.user, True)
    assert client.get("/console/account").status_code == 302
    assert {"console.user_role_changed", "console.user_disabled"} <= set(_actions(app))


def test_sign_in_events_are_audited(app: Flask, clock: Clock) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    post_form(client, "/console/login", {"email": person.email, "password": "nope nope nope"})
    clock.advance(seconds=5)
    sign_in(client, app, person)
    post_form(client, "/console/logout", page="/console/account")
    events = {e.action: e for e in console_state(app).store.audit.list(limit=50)}
    assert events["console.login_failed"].data["step"] == "password"
    login = events["console.login"]
    assert (login.actor_kind, login.actor, login.actor_name) == ("console", person.user.id, "owner")
    assert login.target == f"user:{person.user.id}" and login.actor_ip == "127.0.0.1"
    failed = events["console.login_failed"]
    assert (failed.actor_kind, failed.actor, failed.target) == (
        "console",
        users.ANONYMOUS_ID,
        f"user:{person.user.id}",
    )
    assert events["console.login"].data["method"] == "totp"
    assert "console.logout" in events


def test_sessions_page_names_sessions_by_handle_not_id(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    cookie = client.get_cookie("lc_console").value
    html = client.get("/console/account/sessions").get_data(as_text=True)
    assert cookie not in html
    handles = re.findall(r'id="session-([0-9a-f]+)"', html)
    assert handles and all(len(h) == 16 for h in handles)


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox on Windows",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/156.0.0.0 Safari/537.36",
            "Headless Chrome on Linux",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "Safari on iPhone",
        ),
        (None, "Unknown device"),
        ("curl/8.5.0", "curl/8.5.0"),
    ],
)
def test_device_names(agent: str | None, name: str) -> None:
    from flask_licensechain.console.account import device_name

    assert device_name(agent) == name
