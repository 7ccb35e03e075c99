"""The console's sign-in, sessions and guards, through Flask's test client (no browser).

Each security rule here is a test that fails when the rule is broken: same answer for every
failure, session fixation, idle and absolute timeouts, revocation, CSRF, role refusals,
stored XSS, security headers.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from console_support import (
    PASSWORD,
    Clock,
    create_person,
    csrf_token,
    make_console_app,
    post_form,
    sign_in,
    signed_in_client,
)
from flask import Flask

from flask_licensechain.console import requires_recent_mfa, requires_scope
from flask_licensechain.console.auth import current_user, login_required
from flask_licensechain.console.sessions import COOKIE_NAME, SECURE_COOKIE_NAME, hash_session_id
from flask_licensechain.console.state import console_state


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Flask:
    app = make_console_app(tmp_path, clock=clock)

    # Host-app views guarded by the console's decorators (as the pages will be).
    @app.get("/guarded/licenses-write")
    @requires_scope("licenses:write")
    def licenses_write() -> str:
        user = current_user()
        assert user is not None
        return f"ok {user.role}"

    @app.get("/guarded/sensitive")
    @requires_recent_mfa
    def sensitive() -> str:
        return "sensitive ok"

    @app.get("/guarded/any")
    @login_required
    def anyone() -> str:
        return "any ok"

    return app


def _cookie(client, name: str = COOKIE_NAME) -> str | None:
    found = client.get_cookie(name)
    return None if found is None else found.value


def test_console_is_off_by_default(tmp_path: Path) -> None:
    from gate_support import issuer_app_with

    app = issuer_app_with(tmp_path, gated=False, SECRET_KEY="x")
    response = app.test_client().get("/console/login")
    assert response.status_code == 404
    assert response.is_json  # the app's JSON errors: no console route exists


def test_console_needs_a_secret_key(tmp_path: Path) -> None:
    from flask_licensechain.core.errors import ConfigError

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        make_console_app(tmp_path, SECRET_KEY=None)


def test_sign_in_with_password_and_totp(app: Flask) -> None:
    person = create_person(app, "admin")
    client = app.test_client()
    assert client.get("/console/account").status_code == 302
    done = sign_in(client, app, person)
    assert done.status_code == 302
    page = client.get("/console/account")
    assert page.status_code == 200
    assert person.email in page.get_data(as_text=True)


def test_every_failure_gives_the_same_answer(app: Flask, clock: Clock) -> None:
    person = create_person(app, "admin")
    disabled = create_person(app, "support")
    console_state(app).repo.update_user(disabled.user.id, now=clock(), disabled=True)
    answers = []
    for email, password in (
        (person.email, "wrong password 123"),
        ("nobody@example.test", PASSWORD),
        (disabled.email, PASSWORD),
    ):
        client = app.test_client()
        response = post_form(client, "/console/login", {"email": email, "password": password})
        text = response.get_data(as_text=True)
        answers.append((response.status_code, re.sub(r'(value|content)="[^"]*"', "", text)))
        assert _cookie(client) is None  # no session of any stage
    assert answers[0][0] == 401
    assert answers[0] == answers[1] == answers[2]


def test_second_factor_is_required(app: Flask) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    post_form(client, "/console/login", {"email": person.email, "password": person.password})
    # Password alone: the pages stay shut, the request goes to the second-factor step.
    response = client.get("/console/account")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/console/login/verify")
    assert client.get("/guarded/any").status_code == 302


def test_session_fixation_new_id_at_each_step(app: Flask) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    # An attacker's own half-done session (password checked, second factor pending),
    # planted in the victim's browser.
    planted = "planted-" + "a" * 40
    state = console_state(app)
    attacker = create_person(app, "readonly")
    state.repo.create_session(
        hash_session_id(planted),
        user_id=attacker.user.id,
        stage="mfa",
        now=state.clock(),
        mfa_at=None,
        ip="127.0.0.1",
        user_agent="attacker",
    )
    client.set_cookie(COOKIE_NAME, planted, path="/")
    post_form(client, "/console/login", {"email": person.email, "password": person.password})
    after_password = _cookie(client)
    assert after_password and after_password != planted
    code = person.totp_now(console_state(app))
    post_form(client, "/console/login/verify", {"code": code}, page="/console/login/verify")
    after_mfa = _cookie(client)
    assert after_mfa and after_mfa not in (planted, after_password)
    # The ids left behind are dead.
    for old in (planted, after_password):
        other = app.test_client()
        other.set_cookie(COOKIE_NAME, old, path="/")
        response = other.get("/console/account")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/console/login?")  # no session at all


def test_idle_timeout(app: Flask, clock: Clock) -> None:
    client, _ = signed_in_client(app, "owner")
    clock.advance(minutes=29)
    assert client.get("/console/account").status_code == 200
    clock.advance(minutes=29)  # active: each visit resets the idle time
    assert client.get("/console/account").status_code == 200
    clock.advance(minutes=30, seconds=1)
    response = client.get("/console/account")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]
    ended = [
        e for e in console_state(app).store.audit.list() if e.action == "console.session_ended"
    ]
    assert [e.data["reason"] for e in ended] == ["idle"]


def test_absolute_timeout(app: Flask, clock: Clock) -> None:
    client, _ = signed_in_client(app, "owner")
    start = clock.now
    while clock.now - start < timedelta(hours=12):
        assert client.get("/console/account").status_code == 200
        clock.advance(minutes=25)  # active throughout: never idle
    assert client.get("/console/account").status_code == 302


def test_timeouts_are_configurable(tmp_path: Path, clock: Clock) -> None:
    app = make_console_app(tmp_path, clock=clock, LICENSECHAIN_CONSOLE_IDLE_TIMEOUT=60)
    client, _ = signed_in_client(app, "owner")
    clock.advance(seconds=61)
    assert client.get("/console/account").status_code == 302


def test_revoked_session_is_signed_out_on_next_request(app: Flask) -> None:
    person = create_person(app, "owner")
    mine, _ = signed_in_client(app, person=person)
    other, _ = signed_in_client(app, person=person)
    assert other.get("/console/account").status_code == 200
    page = mine.get("/console/account/sessions").get_data(as_text=True)
    handles = re.findall(r'id="session-([0-9a-f]+)"(?! class="current")', page)
    assert len(handles) == 1
    response = post_form(
        mine, f"/console/account/sessions/{handles[0]}/revoke", page="/console/account"
    )
    assert response.status_code == 302
    assert other.get("/console/account").status_code == 302
    assert mine.get("/console/account").status_code == 200
    actions = [e.action for e in console_state(app).store.audit.list()]
    assert "console.session_revoked" in actions


def test_sign_out_everywhere(app: Flask) -> None:
    person = create_person(app, "owner")
    mine, _ = signed_in_client(app, person=person)
    other, _ = signed_in_client(app, person=person)
    post_form(mine, "/console/account/sessions/revoke-all", page="/console/account")
    assert mine.get("/console/account").status_code == 302
    assert other.get("/console/account").status_code == 302


def test_logout_revokes_the_session(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    cookie = _cookie(client)
    post_form(client, "/console/logout", page="/console/account")
    again = app.test_client()
    again.set_cookie(COOKIE_NAME, cookie or "", path="/")
    assert again.get("/console/account").status_code == 302


def test_csrf_is_required_on_console_posts(app: Flask) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    client.get("/console/login")
    response = client.post("/console/login", data={"email": person.email, "password": PASSWORD})
    assert response.status_code == 400
    assert _cookie(client) is None
    signed, _ = signed_in_client(app, person=person)
    response = signed.post("/console/account/sessions/revoke-all")
    assert response.status_code == 400
    assert signed.get("/console/account").status_code == 200  # nothing was revoked
    bad = signed.post("/console/account/sessions/revoke-all", data={"csrf_token": "forged"})
    assert bad.status_code == 400


def test_api_needs_no_csrf_token(app: Flask) -> None:
    store = console_state(app).store
    _, key = store.api_keys.create("k", ["apps:write"])
    response = app.test_client().post(
        "/v1/apps", json={"name": "No CSRF here"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201, response.get_json()


def test_requires_scope_refuses_other_roles(app: Flask) -> None:
    developer, _ = signed_in_client(app, "developer")
    support, _ = signed_in_client(app, "support")
    readonly, _ = signed_in_client(app, "readonly")
    assert developer.get("/guarded/licenses-write").get_data(as_text=True) == "ok developer"
    assert support.get("/guarded/licenses-write").status_code == 403  # suspend, not write
    assert readonly.get("/guarded/licenses-write").status_code == 403
    assert app.test_client().get("/guarded/licenses-write").status_code == 302


def test_requires_recent_mfa(app: Flask, clock: Clock) -> None:
    client, person = signed_in_client(app, "owner")
    assert client.get("/guarded/sensitive").status_code == 200
    clock.advance(minutes=10, seconds=1)
    response = client.get("/guarded/sensitive")
    assert response.status_code == 302
    assert "/console/reauth" in response.headers["Location"]
    back = post_form(
        client,
        "/console/reauth",
        {"code": person.totp_now(console_state(app)), "next": "/guarded/sensitive"},
        page="/console/account",
    )
    assert back.status_code == 302
    assert client.get("/guarded/sensitive").status_code == 200


def test_stored_xss_in_display_name_and_email_is_escaped(app: Flask) -> None:
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    client, _ = signed_in_client(
        app, "owner", display_name=payload, email='"><svg/onload=alert(1)>@example.test'
    )
    for page in ("/console/account", "/console/account/sessions"):
        html = client.get(page, headers={"User-Agent": payload}).get_data(as_text=True)
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "<svg/onload" not in html
        assert "&lt;script&gt;" in html


def test_security_headers(app: Flask) -> None:
    response = app.test_client().get("/console/login")
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers
    secure = app.test_client().get("/console/login", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    html = response.get_data(as_text=True)
    assert "<script>" not in html and " style=" not in html and " on" + "click=" not in html


def test_the_console_keeps_the_app_wide_headers_when_the_app_turns_them_off(
    tmp_path: Path,
) -> None:
    """The console's framing, sniffing and HSTS rules are the app-wide ones
    (``monitoring/headers.py``, one home): the same ``max-age``, and still sent when
    ``LICENSECHAIN_SECURITY_HEADERS`` is off for the app's own pages."""
    app = make_console_app(
        tmp_path, LICENSECHAIN_SECURITY_HEADERS=False, LICENSECHAIN_HSTS_MAX_AGE=600
    )
    elsewhere = app.test_client().get("/v1/health", base_url="https://localhost")
    assert "X-Frame-Options" not in elsewhere.headers
    console = app.test_client().get("/console/login", base_url="https://localhost")
    assert console.headers["X-Frame-Options"] == "DENY"
    assert console.headers["X-Content-Type-Options"] == "nosniff"
    assert console.headers["Referrer-Policy"] == "same-origin"
    assert console.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"


def test_cookie_flags_plain_and_https(app: Flask) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    token = csrf_token(client)
    plain = client.post(
        "/console/login", data={"csrf_token": token, "email": person.email, "password": PASSWORD}
    )
    header = next(h for h in plain.headers.getlist("Set-Cookie") if h.startswith(COOKIE_NAME))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Secure" not in header
    https = app.test_client()
    base = "https://localhost"
    token = csrf_from_page(https, base)
    secure = https.post(
        "/console/login",
        data={"csrf_token": token, "email": person.email, "password": PASSWORD},
        base_url=base,
        headers={"Referer": base + "/console/login"},
    )
    header = next(
        h for h in secure.headers.getlist("Set-Cookie") if h.startswith(SECURE_COOKIE_NAME)
    )
    assert "Secure" in header and "HttpOnly" in header and "Path=/" in header
    assert "Domain" not in header


def csrf_from_page(client, base: str) -> str:
    from console_support import csrf_from

    return csrf_from(client.get("/console/login", base_url=base).get_data(as_text=True))


def test_mfa_age_zero_config_refused(tmp_path: Path) -> None:
    from flask_licensechain.core.errors import ConfigError

    with pytest.raises(ConfigError, match="LICENSECHAIN_CONSOLE_MFA_MAX_AGE"):
        make_console_app(tmp_path, LICENSECHAIN_CONSOLE_MFA_MAX_AGE=0)


def test_session_list_shows_device_ip_last_seen(app: Flask) -> None:
    client, _ = signed_in_client(app, "developer")
    html = client.get("/console/account/sessions").get_data(as_text=True)
    assert "console tests" in html and "127.0.0.1" in html and "UTC" in html


def test_console_actor_for_the_service_layer(app: Flask) -> None:
    from flask_licensechain.console.auth import console_actor

    @app.get("/guarded/actor")
    @login_required
    def actor_view() -> dict[str, str | None]:
        actor = console_actor()
        return {"kind": actor.kind, "id": actor.id, "ip": actor.ip}

    client, person = signed_in_client(app, "support")
    assert client.get("/guarded/actor").get_json() == {
        "kind": "console",
        "id": person.user.id,
        "ip": "127.0.0.1",
    }


@pytest.mark.parametrize(
    "path", ["/console/nonexistent", "/console/api-keys/nope", "/console/signing-keys/rotate"]
)
def test_an_unknown_console_url_is_an_html_page(app: Flask, path: str) -> None:
    """Under the console, a path or method no route takes answers the console's HTML error
    page (with its headers), not the API's JSON body; the API keeps its JSON."""
    client, _ = signed_in_client(app, "owner")
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    api = client.get("/v1/nonexistent")
    assert api.status_code == 404 and api.mimetype == "application/json"


def test_the_sign_in_redirect_keeps_the_page_without_a_stray_question_mark(app: Flask) -> None:
    plain = app.test_client().get("/console/overview")
    assert plain.headers["Location"].endswith("next=/console/overview")
    query = app.test_client().get("/console/licenses?q=ann")
    assert "next=/console/licenses?q%3Dann" in query.headers["Location"]


def test_without_the_console_extra_the_console_setting_is_a_clear_error(tmp_path: Path) -> None:
    """Without the ``console`` extra (flask-wtf missing), the app still imports; turning
    the console on then refuses to start and names the extra to install."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['flask_wtf'] = None\n"
        "from flask import Flask\n"
        "from flask_licensechain import LicenseChain\n"
        "from flask_licensechain.core.errors import ConfigError\n"
        "app = Flask('t'); app.testing = True\n"
        f"app.config.update(LICENSECHAIN_DATABASE_URL='sqlite:///{tmp_path}/c.db',\n"
        "    LICENSECHAIN_ISSUER='http://127.0.0.1:5000/v1', LICENSECHAIN_CONSOLE=True)\n"
        "try:\n"
        "    LicenseChain(app)\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "refused:" in run.stdout and "flask-licensechain[console]" in run.stdout, run.stderr
