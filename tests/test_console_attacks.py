"""Attacks on the console found in review (each test failed before its fix).

- A second-factor code in other Unicode digits crashed the constant-time compare (500).
- Text the store cannot hold (a lone UTF-16 surrogate from a JSON escape; NUL on
  PostgreSQL) crashed the query (500): the console refuses it up front (400).
- A stolen full session could add a passkey (a persistent, password-free way in) or an
  authenticator app, or remove a passkey, without a fresh second-factor check.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from console_support import (
    Clock,
    create_person,
    csrf_token,
    make_console_app,
    post_form,
    session_cookie_for,
)
from flask import Flask
from flask.testing import FlaskClient

from flask_licensechain.console.repository import WebAuthnCredential
from flask_licensechain.console.sessions import COOKIE_NAME
from flask_licensechain.console.state import console_state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Flask:
    app = make_console_app(tmp_path, clock=clock)
    app.testing = False  # a crash answers 500 here instead of raising into the test
    return app


def _half_signed_in(app: Flask) -> FlaskClient:
    person = create_person(app, "owner")
    client = app.test_client()
    first = post_form(
        client, "/console/login", {"email": person.email, "password": person.password}
    )
    assert first.status_code == 302
    return client


@pytest.mark.parametrize(
    "code",
    [
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
        "۱۲۳ ۴۵۶",  # Persian digits with a space
        "12345\u0663",
    ],
)
def test_second_factor_code_in_other_digits_is_a_plain_failure(app: Flask, code: str) -> None:
    client = _half_signed_in(app)
    response = post_form(
        client, "/console/login/verify", {"code": code}, page="/console/login/verify"
    )
    assert response.status_code == 401
    # The same at enrolment (TOTP confirmation) and at the re-check.
    fresh = create_person(app, "developer", totp=False, backup_codes=False)
    enrolling = app.test_client()
    post_form(enrolling, "/console/login", {"email": fresh.email, "password": fresh.password})
    confirm = post_form(enrolling, "/console/account/totp", {"code": code}, page="/console/login")
    assert confirm.status_code == 400


def _json(client: FlaskClient, path: str, raw: str, token: str) -> int:
    response = client.post(
        path, data=raw, content_type="application/json", headers={"X-CSRFToken": token}
    )
    return response.status_code


@pytest.mark.parametrize("bad", ["\\ud800", "a\\u0000b", "\\udfff\\ud800"])
def test_unstorable_text_in_json_is_refused(app: Flask, bad: str) -> None:
    client = app.test_client()
    token = csrf_token(client)
    body = '{"mode": "passwordless", "credential": {"rawId": "BAD", "response": {}}}'
    body = body.replace("BAD", bad)
    assert _json(client, "/console/webauthn/login/verify", body, token) == 400
    nested = '{"mode": "passwordless", "x": [{"BAD": 1}]}'.replace("BAD", bad)
    assert _json(client, "/console/webauthn/login/options", nested, token) == 400


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/console/login", {"email": "a\x00@example.test", "password": "x" * 20}),
        ("/console/login", {"email": "ada@example.test", "password": "x\x00" * 10}),
    ],
)
def test_nul_in_a_form_is_refused(app: Flask, path: str, data: dict[str, str]) -> None:
    client = app.test_client()
    response = post_form(client, path, data)
    assert response.status_code == 400
    assert "Content-Security-Policy" in response.headers  # the console's own error page


@pytest.fixture
def pg_app(tmp_path: Path, postgres_url: str, clock: Clock) -> Iterator[Flask]:
    app = make_console_app(tmp_path, postgres_url, clock=clock)
    app.testing = False
    yield app
    console_state(app).store.dispose()


@pytest.mark.postgres
def test_nul_never_reaches_postgresql(pg_app: Flask) -> None:
    client = pg_app.test_client()
    response = post_form(
        client, "/console/login", {"email": "a\x00@example.test", "password": "x" * 20}
    )
    assert response.status_code == 400
    token = csrf_token(client)
    body = '{"mode": "passwordless", "credential": {"rawId": "a\\u0000", "response": {}}}'
    assert _json(client, "/console/webauthn/login/verify", body, token) == 400


def _stale_client(app: Flask) -> FlaskClient:
    """A full session whose second factor was checked 11 minutes ago (a stolen cookie)."""
    person = create_person(app, "owner", totp=False)
    state = console_state(app)
    # Passkeys stand in as the second factor (TOTP is off, so its enrolment is open).
    state.repo.add_credential(
        WebAuthnCredential(
            id="Y3JlZC0x",
            user_id=person.user.id,
            name="Key",
            public_key=b"\x00",
            sign_count=0,
            transports=(),
            created_at=state.clock(),
            last_used_at=None,
        )
    )
    state.repo.add_credential(
        WebAuthnCredential(
            id="Y3JlZC0y",
            user_id=person.user.id,
            name="Other key",
            public_key=b"\x00",
            sign_count=0,
            transports=(),
            created_at=state.clock(),
            last_used_at=None,
        )
    )
    client = app.test_client()
    cookie = session_cookie_for(app, person, mfa_age=timedelta(minutes=11))
    client.set_cookie(COOKIE_NAME, cookie, path="/")
    return client


def test_adding_a_passkey_needs_a_recent_second_factor(app: Flask) -> None:
    client = _stale_client(app)
    token = csrf_token(client, "/console/account")
    response = client.post(
        "/console/webauthn/register/options", json={}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 403
    answer = response.get_json()
    assert answer["error"] == "reauth_required"
    assert answer["redirect"].startswith("/console/reauth")
    verify = client.post(
        "/console/webauthn/register/verify",
        json={"credential": {"response": {}}},
        headers={"X-CSRFToken": token},
    )
    assert verify.status_code == 403


def test_enrolling_totp_or_removing_a_passkey_needs_a_recent_second_factor(app: Flask) -> None:
    client = _stale_client(app)
    page = client.get("/console/account/totp")
    assert page.status_code == 302
    assert "/console/reauth" in page.headers["Location"]
    removed = post_form(
        client, "/console/account/passkeys/Y3JlZC0x/remove", page="/console/account"
    )
    assert removed.status_code == 302
    assert "/console/reauth" in removed.headers["Location"]
    user_id = console_state(app).repo.list_users()[0].id
    assert len(console_state(app).repo.credentials(user_id)) == 2
