"""WebAuthn challenges are single-use on the server, bound to the browser that asked.

Found in review: the pending ceremony (challenge, expiry) lived only in Flask's signed
session cookie. Whoever captured that cookie and one signed answer (a proxy log, a shared
machine) could send the pair again, as often as they liked, until the challenge expired:
the server kept no record that it had been used. With a passkey whose signature counter
stays 0 (synced passkeys report 0) nothing else stops the replay, so the tests use such an
authenticator (``webauthn_support.SoftAuthenticator``: real ES256 signatures, py_webauthn's
checks unchanged). Now the challenge is a row (its SHA-256) in
``lc_console_webauthn_challenges``, bound to a random id of the browser's session, deleted
when it is used; SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from console_support import (
    Clock,
    Person,
    csrf_token,
    make_console_app,
    signed_in_client,
)
from flask import Flask
from flask.testing import FlaskClient
from webauthn_support import SoftAuthenticator

from flask_licensechain.console import passkeys
from flask_licensechain.console.sessions import COOKIE_NAME
from flask_licensechain.console.state import console_state

ORIGIN = "http://localhost"  # the test client's origin: the relying party is "localhost"
FLASK_SESSION = "session"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    app = make_console_app(tmp_path, url, clock=clock)
    yield app
    console_state(app).store.dispose()


def _post(client: FlaskClient, path: str, body: dict[str, Any], token: str) -> Any:
    return client.post(f"/console/webauthn/{path}", json=body, headers={"X-CSRFToken": token})


def _flask_session(client: FlaskClient) -> str:
    cookie = client.get_cookie(FLASK_SESSION)
    assert cookie is not None, "the ceremony left no session cookie"
    return cookie.value


def _signed_in(client: FlaskClient) -> bool:
    return client.get("/console/account").status_code == 200


def _register(
    client: FlaskClient, authenticator: SoftAuthenticator
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Registration options for the signed-in ``client`` and the authenticator's answer."""
    token = csrf_token(client, "/console/account")
    options = _post(client, "register/options", {}, token).get_json()
    answer = authenticator.register(options, origin=ORIGIN)
    return options, answer, token


def _with_passkey(app: Flask) -> tuple[Person, SoftAuthenticator]:
    """An owner with a registered passkey (through the console's own ceremony)."""
    client, person = signed_in_client(app, "owner")
    authenticator = SoftAuthenticator()
    _, answer, token = _register(client, authenticator)
    response = _post(client, "register/verify", {"credential": answer, "name": "Key"}, token)
    assert response.status_code == 200, response.get_data(as_text=True)
    return person, authenticator


def _passwordless_answer(
    client: FlaskClient, person: Person, authenticator: SoftAuthenticator
) -> tuple[dict[str, Any], str]:
    """A passwordless ceremony started by ``client``: the verify body and the CSRF token."""
    token = csrf_token(client)
    options = _post(client, "login/options", {"mode": "passwordless"}, token).get_json()
    answer = authenticator.assert_(options, origin=ORIGIN, user_handle=person.user.id.encode())
    return {"mode": "passwordless", "credential": answer}, token


def _challenge_rows(app: Flask) -> int:
    with console_state(app).store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM lc_console_webauthn_challenges")
            ).scalar_one()
        )


def test_a_used_sign_in_challenge_cannot_be_replayed_with_the_captured_cookie(
    app: Flask,
) -> None:
    person, authenticator = _with_passkey(app)
    victim = app.test_client()
    body, token = _passwordless_answer(victim, person, authenticator)
    captured = _flask_session(victim)  # the pre-auth cookie, as it went with the answer
    first = _post(victim, "login/verify", body, token)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert _signed_in(victim)

    attacker = app.test_client()
    attacker.set_cookie(FLASK_SESSION, captured, path="/")
    replay = _post(attacker, "login/verify", body, csrf_token(attacker))
    assert replay.status_code == 401
    assert replay.get_json()["error"] == "webauthn_failed"
    assert attacker.get_cookie(COOKIE_NAME) is None
    assert not _signed_in(attacker)
    # The same browser cannot use it twice either.
    victim.set_cookie(FLASK_SESSION, captured, path="/")
    assert _post(victim, "login/verify", body, token).status_code == 401


def test_an_expired_challenge_is_refused(app: Flask, clock: Clock) -> None:
    person, authenticator = _with_passkey(app)
    client = app.test_client()
    body, token = _passwordless_answer(client, person, authenticator)
    clock.advance(seconds=passkeys.CHALLENGE_TTL + 1)
    assert _post(client, "login/verify", body, token).status_code == 401
    assert not _signed_in(client)


def test_a_challenge_is_accepted_only_from_the_browser_it_was_issued_to(app: Flask) -> None:
    person, authenticator = _with_passkey(app)
    issued_to = app.test_client()
    body, _ = _passwordless_answer(issued_to, person, authenticator)
    other = app.test_client()
    # The other browser has a ceremony of its own, and still cannot use this challenge.
    _post(other, "login/options", {"mode": "passwordless"}, csrf_token(other))
    response = _post(other, "login/verify", body, csrf_token(other))
    assert response.status_code == 401
    assert not _signed_in(other)
    # Refused elsewhere, it is still good where it was issued.
    response = _post(issued_to, "login/verify", body, csrf_token(issued_to))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_registration_challenge_is_used_once(app: Flask) -> None:
    """Replayed with the captured cookie, a registration answer (``none`` attestation signs
    nothing: any key can be put in it) would add the replayer's passkey."""
    client, person = signed_in_client(app, "owner")
    _, answer, token = _register(client, SoftAuthenticator())
    captured = _flask_session(client)
    first = _post(client, "register/verify", {"credential": answer, "name": "Mine"}, token)
    assert first.status_code == 200, first.get_data(as_text=True)

    options = {"rp": {"id": "localhost"}, "challenge": answer_challenge(answer)}
    forged = SoftAuthenticator().register(options, origin=ORIGIN)
    client.set_cookie(FLASK_SESSION, captured, path="/")
    replay = _post(client, "register/verify", {"credential": forged, "name": "Theirs"}, token)
    assert replay.status_code == 400
    names = [c.name for c in console_state(app).repo.credentials(person.user.id)]
    assert names == ["Mine"]


def test_two_concurrent_uses_of_one_challenge_take_it_once(app: Flask) -> None:
    person, authenticator = _with_passkey(app)
    client = app.test_client()
    body, token = _passwordless_answer(client, person, authenticator)
    captured = _flask_session(client)

    def attempt(_: int) -> int:
        replayer = app.test_client()
        replayer.set_cookie(FLASK_SESSION, captured, path="/")
        status: int = _post(replayer, "login/verify", body, token).status_code
        return status

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(attempt, range(8)))
    assert sorted(statuses) == [200] + [401] * 7


def test_expired_challenges_are_swept(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    token = csrf_token(client)
    for _ in range(3):
        _post(client, "login/options", {"mode": "passwordless"}, token)
    other = app.test_client()
    _post(other, "login/options", {"mode": "passwordless"}, csrf_token(other))
    # One pending ceremony of a kind per browser.
    assert _challenge_rows(app) == 2
    clock.advance(seconds=passkeys.CHALLENGE_TTL + 1)
    third = app.test_client()
    _post(third, "login/options", {"mode": "passwordless"}, csrf_token(third))
    assert _challenge_rows(app) == 1


def answer_challenge(answer: dict[str, Any]) -> str:
    """The challenge (base64url) an answer's ``clientDataJSON`` signs."""
    data = answer["response"]["clientDataJSON"]
    decoded = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    challenge: str = decoded["challenge"]
    return challenge
