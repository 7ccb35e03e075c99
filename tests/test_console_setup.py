"""First setup of a console user from the CLI's link, TOTP enrolment, backup codes,
passwords (Argon2id, policy, rehash), lockout and TOTP replay, through the test client."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher
from console_support import (
    FAST_HASHER,
    Clock,
    create_person,
    csrf_from,
    make_console_app,
    post_form,
    sign_in,
    signed_in_client,
)
from flask import Flask

from flask_licensechain.console import throttle
from flask_licensechain.console.passwords import Passwords, WeakPassword, check_new_password
from flask_licensechain.console.state import console_state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Flask:
    return make_console_app(tmp_path, clock=clock)


def _cli(app: Flask, *args: str) -> dict:
    import json

    result = app.test_cli_runner().invoke(args=["licensechain", "users", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _setup_path(link: str) -> str:
    return link[link.index("/console/") :]


def test_first_owner_from_the_printed_link(app: Flask, clock: Clock) -> None:
    made = _cli(app, "create", "--email", "Ada@Example.test", "--role", "owner")
    assert made["user"]["email"] == "ada@example.test"
    assert made["setupLink"].startswith("https://licenses.example.test/console/setup/")
    path = _setup_path(made["setupLink"])
    client = app.test_client()
    page = client.get(path)
    assert page.status_code == 200
    token = csrf_from(page.get_data(as_text=True))
    weak = client.post(
        path,
        data={
            "csrf_token": token,
            "display_name": "Ada",
            "password": "password1234",
            "confirm": "password1234",
        },
    )
    assert weak.status_code == 400 and "too common" in weak.get_data(as_text=True)
    good = "a long and unusual passphrase"
    done = client.post(
        path, data={"csrf_token": token, "display_name": "Ada", "password": good, "confirm": good}
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/console/account/totp")
    # Before a second factor exists, nothing else opens.
    assert client.get("/console/account").headers["Location"].endswith("/console/account/totp")
    enrol = client.get("/console/account/totp").get_data(as_text=True)
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', enrol).group(1)
    assert 'src="data:image/svg+xml' in enrol
    code = pyotp.TOTP(secret).at(clock())
    shown = client.post(
        "/console/account/totp", data={"csrf_token": csrf_from(enrol), "code": code}
    )
    assert shown.status_code == 200
    codes = re.findall(
        r"<li><code>([a-z0-9]{4}(?:-[a-z0-9]{4}){3})</code></li>", shown.get_data(as_text=True)
    )
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/console/account").status_code == 200
    # The link was for one use.
    assert app.test_client().get(path).status_code == 404
    user = console_state(app).repo.find_user_by_email("ada@example.test")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert user.totp_secret is not None and secret.encode() not in user.totp_secret  # sealed


def test_setup_link_expires_after_24_hours(app: Flask, clock: Clock) -> None:
    made = _cli(app, "create", "--email", "late@example.test", "--role", "support")
    clock.advance(hours=24, seconds=1)
    assert app.test_client().get(_setup_path(made["setupLink"])).status_code == 404


def test_cli_refuses_an_unknown_role(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=[
            "licensechain",
            "users",
            "create",
            "--email",
            "x@example.test",
            "--role",
            "god",
            "--json",
        ]
    )
    assert result.exit_code == 1
    assert "owner, admin" in result.output


@pytest.mark.parametrize(
    "password", ["short pass", "password1234", "PASSWORD1234", "qwertyuiop123", "me@example.test"]
)
def test_password_policy(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_new_password(password, email="me@example.test")


def test_a_good_password_passes() -> None:
    check_new_password("tulips in the server room")


def test_password_is_rehashed_when_parameters_change(app: Flask) -> None:
    person = create_person(app, "admin")
    state = console_state(app)
    state.passwords = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    sign_in(app.test_client(), app, person)
    stored = state.repo.get_user(person.user.id).password_hash
    assert "m=2048,t=2,p=1" in stored
    state.passwords = Passwords(FAST_HASHER)


def test_totp_code_is_accepted_once(app: Flask, clock: Clock) -> None:
    person = create_person(app, "owner")
    state = console_state(app)
    code = person.totp_now(state)
    first = app.test_client()
    assert sign_in(first, app, person, code=code).status_code == 302
    assert first.get("/console/account").status_code == 200
    replay = app.test_client()
    response = sign_in(replay, app, person, code=code)
    assert response.status_code == 401
    assert replay.get("/console/account").status_code == 302
    # The previous step's code, still inside the drift window, is a replay too.
    clock.advance(seconds=30)
    assert sign_in(app.test_client(), app, person, code=code).status_code == 401
    # The next step's code works.
    assert sign_in(app.test_client(), app, person).status_code == 302


def test_backup_code_works_once(app: Flask) -> None:
    person = create_person(app, "owner")
    code = person.backup_codes[0]
    client = app.test_client()
    assert sign_in(client, app, person, code=code.upper()).status_code == 302
    assert client.get("/console/account").status_code == 200
    again = sign_in(app.test_client(), app, person, code=code)
    assert again.status_code == 401
    assert code not in again.get_data(as_text=True)  # a code is never shown back
    actions = [e.action for e in console_state(app).store.audit.list()]
    assert "console.backup_code_used" in actions


def test_lockout_after_ten_failures_and_owner_unlock(app: Flask, clock: Clock) -> None:
    person = create_person(app, "developer")
    state = console_state(app)
    for n in range(throttle.LOCK_AFTER):
        response = post_form(
            app.test_client(), "/console/login", {"email": person.email, "password": f"wrong {n}"}
        )
        assert response.status_code == 401
        clock.advance(seconds=throttle.MAX_WAIT if n >= 8 else 2**n + 1)
    locked = state.repo.get_user(person.user.id)
    assert locked.locked_until is not None and locked.locked_until > clock()
    # The right password no longer opens, with the same answer.
    client = app.test_client()
    response = post_form(
        client, "/console/login", {"email": person.email, "password": person.password}
    )
    assert response.status_code == 401
    assert client.get_cookie("lc_console") is None
    actions = [e.action for e in state.store.audit.list()]
    assert "console.account_locked" in actions
    _cli(app, "unlock", person.email)
    assert sign_in(app.test_client(), app, person).status_code == 302


def test_lock_times_out(app: Flask, clock: Clock) -> None:
    person = create_person(app, "developer")
    state = console_state(app)
    state.repo.update_user(person.user.id, now=clock(), locked_until=clock() + state.lockout)
    assert (
        post_form(
            app.test_client(),
            "/console/login",
            {"email": person.email, "password": person.password},
        ).status_code
        == 401
    )
    clock.advance(seconds=state.lockout.total_seconds() + 1)
    assert sign_in(app.test_client(), app, person).status_code == 302


def test_backoff_refuses_even_the_right_password(app: Flask, clock: Clock) -> None:
    person = create_person(app, "developer")
    for n in range(throttle.ACCOUNT_FREE + 1):
        post_form(
            app.test_client(), "/console/login", {"email": person.email, "password": f"bad {n}"}
        )
    # Backoff due (2 s after the 4th failure): the right password is refused, uncounted.
    response = post_form(
        app.test_client(), "/console/login", {"email": person.email, "password": person.password}
    )
    assert response.status_code == 401
    clock.advance(seconds=3)
    assert sign_in(app.test_client(), app, person).status_code == 302


def test_backoff_per_ip_across_accounts(app: Flask, clock: Clock) -> None:
    victim = create_person(app, "support")
    for n in range(throttle.IP_FREE + 1):
        post_form(
            app.test_client(),
            "/console/login",
            {"email": f"spray{n}@example.test", "password": "x" * 12},
        )
    response = post_form(
        app.test_client(), "/console/login", {"email": victim.email, "password": victim.password}
    )
    assert response.status_code == 401
    clock.advance(seconds=3)
    assert sign_in(app.test_client(), app, victim).status_code == 302


def test_wrong_second_factor_counts_as_a_failure(app: Flask) -> None:
    person = create_person(app, "owner")
    sign_in(app.test_client(), app, person, code="000000")
    count, _ = console_state(app).repo.failures_since(
        console_state(app).clock() - throttle.WINDOW, email=person.email
    )
    assert count == 1


def test_regenerate_backup_codes_needs_recent_mfa(app: Flask, clock: Clock) -> None:
    client, person = signed_in_client(app, "owner")
    fresh = post_form(client, "/console/account/backup-codes", page="/console/account")
    assert fresh.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", fresh.get_data(as_text=True))
    assert len(codes) == 10 and not set(codes) & set(person.backup_codes)
    clock.advance(minutes=11)
    stale = post_form(client, "/console/account/backup-codes", page="/console/account")
    assert stale.status_code == 302 and "/console/reauth" in stale.headers["Location"]


def test_totp_secret_is_sealed_by_the_keyring_and_follows_its_rotation(tmp_path: Path) -> None:
    import base64
    import json

    k1 = base64.urlsafe_b64encode(bytes(range(32))).decode()
    k2 = base64.urlsafe_b64encode(bytes(range(1, 33))).decode()
    db = f"sqlite:///{tmp_path}/rotate.db"
    first = make_console_app(
        tmp_path, db, LICENSECHAIN_ENCRYPTION_KEY=None, LICENSECHAIN_ENCRYPTION_KEYS=f"k1:{k1}"
    )
    person = create_person(first, "owner")
    stored = console_state(first).repo.get_user(person.user.id).totp_secret
    assert stored.startswith(b"lcs1.k1.") and person.totp_secret.encode() not in stored
    console_state(first).store.dispose()
    # A new key first; the rotation re-seals the TOTP secret under it.
    second = make_console_app(
        tmp_path,
        db,
        LICENSECHAIN_ENCRYPTION_KEY=None,
        LICENSECHAIN_ENCRYPTION_KEYS=f"k2:{k2},k1:{k1}",
    )
    result = second.test_cli_runner().invoke(
        args=["licensechain", "rotate-encryption-key", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]), result.output
    assert console_state(second).repo.get_user(person.user.id).totp_secret.startswith(b"lcs1.k2.")
    console_state(second).store.dispose()
    # k1 gone: the TOTP still signs in.
    third = make_console_app(
        tmp_path, db, LICENSECHAIN_ENCRYPTION_KEY=None, LICENSECHAIN_ENCRYPTION_KEYS=f"k2:{k2}"
    )
    assert sign_in(third.test_client(), third, person).status_code == 302


class _CountingHasher(PasswordHasher):
    calls = 0

    def verify(self, hash: str, password: str) -> bool:
        type(self).calls += 1
        return super().verify(hash, password)


def test_every_refusal_costs_one_password_check(app: Flask, clock: Clock) -> None:
    """Same time whatever failed: each attempt runs exactly one Argon2 verification (a dummy
    hash for unknown, disabled, locked or throttled accounts), never zero."""
    state = console_state(app)
    hasher = _CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    good = create_person(app, "developer")
    disabled = create_person(app, "developer")
    state.repo.update_user(disabled.user.id, now=clock(), disabled=True)
    locked = create_person(app, "developer")
    state.repo.update_user(locked.user.id, now=clock(), locked_until=clock() + state.lockout)
    state.passwords = Passwords(hasher)
    cases = [
        ("nobody@example.test", PASSWORD_GUESS),
        (disabled.email, disabled.password),
        (locked.email, locked.password),
        (good.email, PASSWORD_GUESS),
    ]
    for email, password in cases:
        before = _CountingHasher.calls
        response = post_form(
            app.test_client(), "/console/login", {"email": email, "password": password}
        )
        assert response.status_code == 401
        assert _CountingHasher.calls - before == 1, email
    # Throttled (backoff due after repeated failures): refused unchecked, yet one check spent.
    for _ in range(throttle.ACCOUNT_FREE):
        post_form(
            app.test_client(), "/console/login", {"email": good.email, "password": PASSWORD_GUESS}
        )
    before = _CountingHasher.calls
    response = post_form(
        app.test_client(), "/console/login", {"email": good.email, "password": good.password}
    )
    assert response.status_code == 401 and _CountingHasher.calls - before == 1


PASSWORD_GUESS = "guessing passwords here"


def test_old_sessions_and_failures_are_not_kept(app: Flask, clock: Clock) -> None:
    state = console_state(app)
    person = create_person(app, "owner")
    post_form(
        app.test_client(), "/console/login", {"email": person.email, "password": PASSWORD_GUESS}
    )
    signed_in_client(app, person=person)
    clock.advance(hours=13)
    post_form(
        app.test_client(), "/console/login", {"email": "x@example.test", "password": PASSWORD_GUESS}
    )
    assert state.repo.failures_since(clock() - timedelta(days=1), email=person.email)[0] == 0
    sign_in(app.test_client(), app, person)
    assert len(state.repo.list_sessions(person.user.id)) == 1


def test_users_commands_need_the_console_on(tmp_path: Path) -> None:
    import json

    from gate_support import issuer_app_with

    app = issuer_app_with(tmp_path, gated=False)
    result = app.test_cli_runner().invoke(
        args=[
            "licensechain",
            "users",
            "create",
            "--email",
            "a@example.test",
            "--role",
            "owner",
            "--json",
        ]
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "console_off"
