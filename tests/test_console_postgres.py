"""The console's store on PostgreSQL: the same sign-in rules as on SQLite (setup link,
TOTP once, backup code once, lockout, revocation, timeouts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import TEST_ACTOR, Clock, create_person, make_console_app, post_form, sign_in
from flask import Flask
from flask.testing import FlaskClient

from flask_licensechain.console import people, throttle
from flask_licensechain.console.state import console_state
from flask_licensechain.services import users

pytestmark = pytest.mark.postgres


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, postgres_url: str, clock: Clock) -> Iterator[Flask]:
    app = make_console_app(tmp_path, postgres_url, clock=clock)
    yield app
    console_state(app).store.dispose()


def _signed_out(client: FlaskClient) -> bool:
    return client.get("/console/account").status_code == 302


def test_console_rules_on_postgresql(app: Flask, clock: Clock) -> None:
    state = console_state(app)
    assert state.store.backend == "postgresql"
    # Setup link: one use.
    user, token = users.create_user(state, TEST_ACTOR, email="pg@example.test", role="admin")
    assert state.repo.use_setup_token(people.setup_token_hash(token), clock()) == user.id
    assert state.repo.use_setup_token(people.setup_token_hash(token), clock()) is None
    person = create_person(app, "owner")
    # TOTP: once.
    code = person.totp_now(state)
    first = app.test_client()
    assert sign_in(first, app, person, code=code).status_code == 302
    assert not _signed_out(first)
    assert sign_in(app.test_client(), app, person, code=code).status_code == 401
    # Backup code: once.
    assert sign_in(app.test_client(), app, person, code=person.backup_codes[0]).status_code == 302
    assert sign_in(app.test_client(), app, person, code=person.backup_codes[0]).status_code == 401
    # Revocation and idle timeout.
    state.repo.revoke_user_sessions(person.user.id, clock())
    assert _signed_out(first)
    again = app.test_client()
    clock.advance(seconds=300)
    assert sign_in(again, app, person, code=person.backup_codes[1]).status_code == 302
    clock.advance(minutes=31)
    assert _signed_out(again)
    # Lockout.
    victim = create_person(app, "support")
    for n in range(throttle.LOCK_AFTER):
        post_form(
            app.test_client(),
            "/console/login",
            {"email": victim.email, "password": f"no {n} x" * 2},
        )
        clock.advance(seconds=throttle.MAX_WAIT if n >= 8 else 2**n + 1)
    locked = state.repo.get_user(victim.user.id)
    assert locked.locked_until is not None and locked.locked_until > clock()
