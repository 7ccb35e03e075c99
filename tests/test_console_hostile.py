"""Hostile input to the console: open redirects, malformed WebAuthn calls, forged or
missing ceremonies, oversized or odd fields. Each answers a clear 4xx, never a 500, and
nothing signs in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from console_support import (
    Clock,
    create_person,
    csrf_token,
    make_console_app,
    post_form,
    sign_in,
    signed_in_client,
)
from flask import Flask

from flask_licensechain.console.state import console_state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Flask:
    return make_console_app(tmp_path, clock=clock)


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/v1/apps",
        "javascript:alert(1)",
        "/console/../v1/apps",
    ],
)
def test_next_never_leaves_the_console(app: Flask, target: str) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    first = post_form(
        client,
        "/console/login",
        {"email": person.email, "password": person.password, "next": target},
    )
    assert "evil" not in first.headers["Location"]
    done = post_form(
        client,
        "/console/login/verify",
        {"code": person.totp_now(console_state(app)), "next": target},
        page="/console/login/verify",
    )
    assert done.status_code == 302
    assert done.headers["Location"] in ("/console/", "/console")


def test_next_inside_the_console_is_followed(app: Flask) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    post_form(client, "/console/login", {"email": person.email, "password": person.password})
    done = post_form(
        client,
        "/console/login/verify",
        {"code": person.totp_now(console_state(app)), "next": "/console/account/sessions"},
        page="/console/login/verify",
    )
    assert done.headers["Location"] == "/console/account/sessions"


def _json(client, path: str, body: object, token: str | None) -> object:
    headers = {"X-CSRFToken": token} if token else {}
    return client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"mode": "root"},
        {"mode": "passwordless", "credential": "x"},
        {"mode": "passwordless", "credential": {"rawId": "x"}},
        {"mode": "passwordless", "credential": {"rawId": "x", "response": {}}},
    ],
)
def test_webauthn_login_refuses_malformed_calls(app: Flask, body: object) -> None:
    client = app.test_client()
    token = csrf_token(client)
    response = _json(client, "/console/webauthn/login/verify", body, token)
    assert response.status_code in (400, 401)
    assert client.get_cookie("lc_console") is None


def test_webauthn_calls_need_the_csrf_header(app: Flask) -> None:
    client = app.test_client()
    client.get("/console/login")
    response = _json(client, "/console/webauthn/login/options", {"mode": "passwordless"}, None)
    assert response.status_code == 400


def test_webauthn_without_a_ceremony_signs_nobody_in(app: Flask) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    token = csrf_token(client)
    forged = {
        "mode": "passwordless",
        "credential": {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {
                "clientDataJSON": "e30",
                "authenticatorData": "AAAA",
                "signature": "AAAA",
                "userHandle": None,
            },
        },
    }
    response = _json(client, "/console/webauthn/login/verify", forged, token)
    assert response.status_code == 401
    assert response.get_json()["error"] == "webauthn_failed"
    assert client.get_cookie("lc_console") is None
    # Options for the second-factor and re-check modes need the matching session.
    for mode in ("mfa", "reauth"):
        assert (
            _json(client, "/console/webauthn/login/options", {"mode": mode}, token).status_code
            == 401
        )
    # An unknown credential still counts against the client's IP.
    count, _ = console_state(app).repo.failures_since(
        console_state(app).clock() - timedelta(minutes=1), ip="127.0.0.1"
    )
    assert count == 1
    assert sign_in(app.test_client(), app, person).status_code == 302


def test_passkey_options_give_a_challenge_and_the_relying_party(tmp_path: Path) -> None:
    app = make_console_app(
        tmp_path, LICENSECHAIN_CONSOLE_URL="https://console.example.test/console"
    )
    client, person = signed_in_client(app, "developer")
    token = csrf_token(client, "/console/account")
    options = _json(client, "/console/webauthn/register/options", {}, token).get_json()
    assert options["rp"]["id"] == "console.example.test"
    assert len(options["challenge"]) >= 43  # 32 bytes, base64url
    again = _json(client, "/console/webauthn/register/options", {}, token).get_json()
    assert again["challenge"] != options["challenge"]
    # A registration answer without its ceremony (or a second use of one) is refused.
    bad = _json(
        client, "/console/webauthn/register/verify", {"credential": {"response": {}}}, token
    )
    assert bad.status_code == 400
    assert console_state(app).repo.credentials(person.user.id) == []


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/console/login", {"email": "a" * 5000 + "@example.test", "password": "x" * 5000}),
        ("/console/login", {"email": "\x00@example.test", "password": "\x00" * 20}),
        ("/console/setup/" + "x" * 3000, {"password": "x", "confirm": "x"}),
    ],
)
def test_odd_fields_answer_4xx(app: Flask, path: str, data: dict[str, str]) -> None:
    response = post_form(app.test_client(), path, data)
    assert 400 <= response.status_code < 500
