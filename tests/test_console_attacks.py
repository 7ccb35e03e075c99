"""Attacks on the console found in review (each test failed before its fix).

- A second-factor code in other Unicode digits crashed the constant-time compare (500).
- Text the store cannot hold (a lone UTF-16 surrogate from a JSON escape; NUL on
  PostgreSQL) crashed the query (500): the console refuses it up front (400).
- A burst of parallel wrong passwords was checked in full: every request passed the
  backoff before any other had counted its failure (tested against gunicorn).
- JSON members of the wrong type (``next``, ``name``, ``transports``) crashed the WebAuthn
  views after the authenticator's answer verified (500): now 400.
- A stolen full session could add a passkey (a persistent, password-free way in) or an
  authenticator app, or remove a passkey, without a fresh second-factor check.
"""

from __future__ import annotations

import base64
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from argon2 import PasswordHasher
from conftest import free_port
from console_support import (
    Clock,
    create_person,
    csrf_from,
    csrf_token,
    make_console_app,
    post_form,
    session_cookie_for,
    signed_in_client,
)
from flask import Flask
from flask.testing import FlaskClient
from issuer_support import TEST_ENCRYPTION_KEY

from flask_licensechain.console import passkeys, throttle
from flask_licensechain.console.auth import safe_next
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


# -- a burst of parallel guesses against a real server ---------------------------------------

BURST = 16


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Flask]]:
    """The console in gunicorn (2 processes of 8 threads) on SQLite, and a seed app on the
    same database."""
    db = f"sqlite:///{tmp_path}/console.db"
    seed = make_console_app(tmp_path, db, SECRET_KEY="attacks secret")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSECHAIN_")}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parent),
        CONSOLE_TEST_INSTANCE=str(tmp_path / "instance"),
        SECRET_KEY="attacks secret",
        LICENSECHAIN_DATABASE_URL=db,
        LICENSECHAIN_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
        LICENSECHAIN_ISSUER=f"http://127.0.0.1:{port}/v1",
        LICENSECHAIN_CONSOLE="true",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            str(BURST // 2),
            "--log-level",
            "warning",
            "console_server:create_app()",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/console/login", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the console server did not start"
                time.sleep(0.2)
        yield url, seed
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_parallel_guesses_do_not_escape_the_backoff(served: tuple[str, Flask]) -> None:
    """A burst of simultaneous wrong passwords: each request checked the backoff before any
    of the others had counted its failure, so nearly all were checked (12 of 16 here; the
    lockout of 10 was no bound). Now only what the backoff allows in the burst's time."""
    url, seed = served
    person = create_person(seed, "owner")
    state = console_state(seed)
    # A real Argon2id hash: its check is the slow part a burst races through.
    state.repo.update_user(
        person.user.id, now=state.clock(), password_hash=PasswordHasher().hash(person.password)
    )
    with httpx.Client(base_url=url, timeout=60) as client:
        token = csrf_from(client.get("/console/login").text)
        cookies = dict(client.cookies)
    barrier = threading.Barrier(BURST)

    def guess(number: int) -> int:
        barrier.wait()
        response = httpx.post(
            f"{url}/console/login",
            data={"csrf_token": token, "email": person.email, "password": f"wrong guess {number}"},
            cookies=cookies,
            timeout=60,
        )
        return response.status_code

    started = time.monotonic()
    with ThreadPoolExecutor(BURST) as pool:
        statuses = list(pool.map(guess, range(BURST)))
    elapsed = time.monotonic() - started
    assert set(statuses) == {401}
    checked = [
        e
        for e in state.store.audit.list()
        if e.action == "console.login_failed" and e.target == f"user:{person.user.id}"
    ]
    # After the free ones, the k-th more waits 2 ** (k - 1) s after the one before it: in
    # ``elapsed`` seconds at most log2(elapsed + 1) more (the loaded machine is slow).
    bound = throttle.ACCOUNT_FREE + math.floor(math.log2(elapsed + 1))
    assert len(checked) <= bound, f"{len(checked)} of {BURST} guesses checked in {elapsed:.1f} s"


# -- JSON members of the wrong type, after the authenticator's answer verified --------------


def _verified(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for py_webauthn's checks: every answer verifies (these tests are about
    what the views do with the rest of the body afterwards)."""
    monkeypatch.setattr(
        passkeys,
        "verify_registration_response",
        lambda **_: SimpleNamespace(
            credential_id=b"new-credential", credential_public_key=b"k", sign_count=0
        ),
    )
    monkeypatch.setattr(
        passkeys,
        "verify_authentication_response",
        lambda **_: SimpleNamespace(new_sign_count=1),
    )


@pytest.mark.parametrize(
    "extra",
    [{"transports": 5}, {"transports": [1, 2]}, {"name": {"x": 1}}, {"name": ["Key"]}],
)
def test_register_refuses_members_of_the_wrong_type(
    app: Flask, monkeypatch: pytest.MonkeyPatch, extra: dict[str, object]
) -> None:
    _verified(monkeypatch)
    client, person = signed_in_client(app, "developer")
    token = csrf_token(client, "/console/account")
    headers = {"X-CSRFToken": token}
    assert client.post("/console/webauthn/register/options", json={}, headers=headers).is_json
    response = client.post(
        "/console/webauthn/register/verify",
        json={"credential": {"response": {}}, **extra},
        headers=headers,
    )
    assert response.status_code == 400
    assert console_state(app).repo.credentials(person.user.id) == []


@pytest.mark.parametrize("next_value", [5, ["/console/account"], {"a": 1}])
def test_passkey_sign_in_refuses_a_next_of_the_wrong_type(
    app: Flask, monkeypatch: pytest.MonkeyPatch, next_value: object
) -> None:
    _verified(monkeypatch)
    person = create_person(app, "owner")
    state = console_state(app)
    state.repo.add_credential(
        WebAuthnCredential(
            id="Y3JlZA",
            user_id=person.user.id,
            name="Key",
            public_key=b"k",
            sign_count=0,
            transports=(),
            created_at=state.clock(),
            last_used_at=None,
        )
    )
    client = app.test_client()
    headers = {"X-CSRFToken": csrf_token(client)}
    client.post("/console/webauthn/login/options", json={"mode": "passwordless"}, headers=headers)
    handle = base64.urlsafe_b64encode(person.user.id.encode()).decode().rstrip("=")
    response = client.post(
        "/console/webauthn/login/verify",
        json={
            "mode": "passwordless",
            "credential": {"rawId": "Y3JlZA", "response": {"userHandle": handle}},
            "next": next_value,
        },
        headers=headers,
    )
    assert response.status_code == 400
    assert client.get("/console/account").status_code == 302  # not signed in


def test_safe_next_takes_only_a_string(app: Flask) -> None:
    with app.test_request_context():
        for value in (5, ["/console/account"], {"a": 1}, b"/console/account"):
            assert safe_next(value) is None
        assert safe_next("/console/account") == "/console/account"


@pytest.mark.parametrize(
    "target", ["/console/%2e%2e/v1/apps", "/console/%2E./v1/apps", "/console/.%2e/v1"]
)
def test_next_with_an_encoded_dot_segment_is_refused(app: Flask, target: str) -> None:
    """Browsers resolve ``%2e%2e`` as ``..`` (WHATWG URL): out of the console."""
    with app.test_request_context():
        assert safe_next(target) is None
