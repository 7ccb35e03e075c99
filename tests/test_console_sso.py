"""Console SSO (OpenID Connect via authlib) against a local provider process
(``tests/oidc_provider.py``): a verified email maps to an existing user, nothing else signs
in, no user is ever created, and the provider's MFA counts only when configured."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import free_port
from console_support import Clock, create_person, make_console_app
from flask import Flask
from flask.testing import FlaskClient

from flask_licensechain.console.state import console_state

HERE = Path(__file__).resolve().parent
CLIENT_ID = "console-test-client"
CLIENT_SECRET = "console-test-secret"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "oidc_provider.py"), str(port), CLIENT_ID, CLIENT_SECRET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test OpenID provider did not start") from None
            time.sleep(0.1)
    try:
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


def _app(tmp_path: Path, issuer: str, **config: object) -> Flask:
    return make_console_app(
        tmp_path,
        clock=Clock(),
        LICENSECHAIN_CONSOLE_SSO_ISSUER=issuer,
        LICENSECHAIN_CONSOLE_SSO_CLIENT_ID=CLIENT_ID,
        LICENSECHAIN_CONSOLE_SSO_CLIENT_SECRET=CLIENT_SECRET,
        **config,
    )


def _next_identity(issuer: str, **identity: object) -> None:
    request = urllib.request.Request(
        f"{issuer}/control/next",
        data=json.dumps(identity).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def sso_round_trip(client: FlaskClient) -> object:
    """Start SSO in the console, let the provider answer, come back: the console's answer."""
    start = client.get("/console/sso/login")
    assert start.status_code == 302, start.get_data(as_text=True)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(start.headers["Location"], timeout=5)
        raise AssertionError("the provider did not redirect back")
    except urllib.error.HTTPError as answer:
        back = answer.headers["Location"]
    parts = urlsplit(back)
    return client.get(f"{parts.path}?{parts.query}")


def test_sso_signs_in_the_user_with_that_verified_email_then_asks_the_second_factor(
    tmp_path: Path, provider: str
) -> None:
    app = _app(tmp_path, provider)
    person = create_person(app, "developer")
    _next_identity(provider, email=person.email.upper(), email_verified=True, amr=["pwd"])
    client = app.test_client()
    response = sso_round_trip(client)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login/verify")
    assert client.get("/console/account").status_code == 302  # second factor pending


def test_idp_mfa_counts_only_when_configured(tmp_path: Path, provider: str) -> None:
    app = _app(tmp_path, provider, LICENSECHAIN_CONSOLE_SSO_MFA_VALUES="mfa,hwk")
    person = create_person(app, "admin")
    _next_identity(provider, email=person.email, email_verified=True, amr=["pwd", "mfa"])
    client = app.test_client()
    response = sso_round_trip(client)
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    assert client.get("/console/account").status_code == 200
    # Without the setting, the same token's amr does not count.
    (tmp_path / "b").mkdir()
    other = _app(tmp_path / "b", provider)
    person_b = create_person(other, "admin", email=person.email)
    _next_identity(provider, email=person_b.email, email_verified=True, amr=["mfa"])
    second = other.test_client()
    assert sso_round_trip(second).headers["Location"].startswith("/console/login/verify")


@pytest.mark.parametrize(
    "identity",
    [
        {"email": "stranger@example.test", "email_verified": True, "amr": ["mfa"]},
        {"email": "UNVERIFIED", "email_verified": False, "amr": ["mfa"]},
    ],
)
def test_sso_never_creates_users_and_needs_a_verified_email(
    tmp_path: Path, provider: str, identity: dict[str, object]
) -> None:
    app = _app(tmp_path, provider, LICENSECHAIN_CONSOLE_SSO_MFA_VALUES="mfa")
    person = create_person(app, "owner")
    if identity["email"] == "UNVERIFIED":
        identity = {**identity, "email": person.email}
    _next_identity(provider, **identity)
    client = app.test_client()
    response = sso_round_trip(client)
    assert response.status_code == 401
    assert client.get("/console/account").status_code == 302
    state = console_state(app)
    assert [u.email for u in state.repo.list_users()] == [person.email]


def test_sso_refuses_a_disabled_user(tmp_path: Path, provider: str) -> None:
    app = _app(tmp_path, provider, LICENSECHAIN_CONSOLE_SSO_MFA_VALUES="mfa")
    person = create_person(app, "support")
    state = console_state(app)
    state.repo.update_user(person.user.id, now=state.clock(), disabled=True)
    _next_identity(provider, email=person.email, email_verified=True, amr=["mfa"])
    assert sso_round_trip(app.test_client()).status_code == 401


def test_sso_is_off_without_configuration(tmp_path: Path) -> None:
    app = make_console_app(tmp_path)
    assert app.test_client().get("/console/sso/login").status_code == 404
