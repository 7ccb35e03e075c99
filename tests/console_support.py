"""Helpers for the console tests: a console app, users of any role, signed-in clients.

Fast page tests need no browser:

    from console_support import make_console_app, signed_in_client

    def test_support_cannot_see_api_keys(tmp_path):
        app = make_console_app(tmp_path)
        client, person = signed_in_client(app, role="support")
        assert client.get("/console/api-keys").status_code == 403
        assert post_form(client, "/console/api-keys", {"name": "x"}).status_code == 403

As a pytest plugin (``pytest_plugins = ["console_support"]``) it also gives the fixtures
``console_clock`` (a ``Clock``) and ``console_app`` (``make_console_app`` on that clock).

``signed_in_client`` writes a full session (password and second factor done, second factor
checked just now) straight into the store and gives its cookie to a Flask test client.
``post_form`` adds the CSRF token the console requires (read from a console page).
``sign_in`` runs the real two-step sign-in through the forms instead.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from issuer_support import TEST_ENCRYPTION_KEY
from werkzeug.test import TestResponse

from flask_licensechain import LicenseChain
from flask_licensechain.console import mfa
from flask_licensechain.console.passwords import Passwords
from flask_licensechain.console.repository import ConsoleUser
from flask_licensechain.console.sessions import COOKIE_NAME, STAGE_FULL, hash_session_id
from flask_licensechain.console.state import ConsoleState, console_state
from flask_licensechain.services import users
from flask_licensechain.store import Actor

ISSUER = "https://licenses.example.test/v1"
PASSWORD = "correct staple horse battery"
#: cheap Argon2id parameters: tests hash many passwords (the real ones are argon2-cffi's)
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_numbers = itertools.count(1)
#: who makes the tests' people (as ``flask licensechain users create`` would)
TEST_ACTOR = Actor(kind="cli", id="test", name="cli")


class Clock:
    """A settable UTC clock for ``ConsoleState.clock``: ``clock.advance(minutes=31)``."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_console_app(
    tmp_path: Path, database_url: str | None = None, *, clock: Clock | None = None, **config: Any
) -> Flask:
    """An issuer app with the console on (at ``/console``), on SQLite in ``tmp_path`` unless
    ``database_url`` is given; ``config`` adds ``LICENSECHAIN_*`` (or Flask) values."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        {
            "TESTING": True,
            "SECRET_KEY": "console tests " + secrets.token_hex(8),
            "LICENSECHAIN_DATABASE_URL": database_url or f"sqlite:///{tmp_path}/licensechain.db",
            "LICENSECHAIN_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
            "LICENSECHAIN_ISSUER": ISSUER,
            "LICENSECHAIN_RATELIMIT_ENABLED": False,
            "LICENSECHAIN_CONSOLE": True,
            **config,
        }
    )
    LicenseChain(app)
    state = console_state(app)
    state.passwords = Passwords(FAST_HASHER)
    if clock is not None:
        state.clock = clock
    return app


@dataclass
class Person:
    """A console user made for a test, with what it needs to sign in."""

    user: ConsoleUser
    password: str
    totp_secret: str | None
    backup_codes: list[str] = field(default_factory=list)

    @property
    def email(self) -> str:
        return self.user.email

    def totp_now(self, state: ConsoleState, *, steps_ahead: int = 0) -> str:
        assert self.totp_secret is not None
        totp = pyotp.TOTP(self.totp_secret)
        return totp.generate_otp(totp.timecode(state.clock()) + steps_ahead)


def create_person(
    app: Flask,
    role: str = "owner",
    *,
    email: str | None = None,
    display_name: str | None = None,
    password: str = PASSWORD,
    totp: bool = True,
    backup_codes: bool = True,
    app_ids: tuple[str, ...] = (),
) -> Person:
    """A user of ``role`` with a password, an active TOTP and backup codes (by default)."""
    state = console_state(app)
    address = email or f"{role}{next(_numbers)}@example.test"
    user, _ = users.create_user(
        state, TEST_ACTOR, email=address, role=role, display_name=display_name, app_ids=app_ids
    )
    now = state.clock()
    values: dict[str, Any] = {"password_hash": state.passwords.hash(password)}
    secret = None
    if totp:
        secret = mfa.new_totp_secret()
        values.update(totp_secret=mfa.seal_totp_secret(state, user.id, secret), totp_enabled=True)
    user = state.repo.update_user(user.id, now=now, **values)
    codes = mfa.regenerate_backup_codes(state, user) if backup_codes else []
    return Person(user=user, password=password, totp_secret=secret, backup_codes=codes)


def session_cookie_for(app: Flask, person: Person, *, mfa_age: timedelta = timedelta()) -> str:
    """A new full session of ``person`` written to the store; its cookie value."""
    state = console_state(app)
    raw = secrets.token_urlsafe(32)
    now = state.clock()
    state.repo.create_session(
        hash_session_id(raw),
        user_id=person.user.id,
        stage=STAGE_FULL,
        now=now,
        mfa_at=now - mfa_age,
        ip="127.0.0.1",
        user_agent="console tests",
    )
    return raw


def signed_in_client(
    app: Flask, role: str = "owner", *, person: Person | None = None, **person_options: Any
) -> tuple[FlaskClient, Person]:
    """A test client signed in (fully, second factor checked now) as a new user of
    ``role`` (or as ``person``)."""
    person = person or create_person(app, role, **person_options)
    client = app.test_client()
    client.set_cookie(COOKIE_NAME, session_cookie_for(app, person), path="/")
    return client, person


_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token in a console page."""
    found = _META.search(html) or _FIELD.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def csrf_token(client: FlaskClient, page: str = "/console/login") -> str:
    return csrf_from(client.get(page).get_data(as_text=True))


def post_form(
    client: FlaskClient,
    path: str,
    data: dict[str, Any] | None = None,
    *,
    page: str = "/console/login",
    **kwargs: Any,
) -> TestResponse:
    """POST ``data`` to ``path`` with a valid CSRF token (read from ``page``)."""
    body = {"csrf_token": csrf_token(client, page), **(data or {})}
    return client.post(path, data=body, **kwargs)


def sign_in(
    client: FlaskClient, app: Flask, person: Person, *, code: str | None = None
) -> TestResponse:
    """The real sign-in: password, then a TOTP code (or ``code``). The last response."""
    first = post_form(
        client, "/console/login", {"email": person.email, "password": person.password}
    )
    assert first.status_code == 302, first.get_data(as_text=True)
    state = console_state(app)
    return post_form(
        client,
        "/console/login/verify",
        {"code": code if code is not None else person.totp_now(state)},
        page="/console/login/verify",
    )


@pytest.fixture
def console_clock() -> Clock:
    """A settable clock for the console (``console_clock.advance(minutes=31)``)."""
    return Clock()


@pytest.fixture
def console_app(tmp_path: Path, console_clock: Clock) -> Flask:
    """A console app on SQLite in ``tmp_path``, on ``console_clock``."""
    return make_console_app(tmp_path, clock=console_clock)
