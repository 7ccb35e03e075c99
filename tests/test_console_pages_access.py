"""The business pages' guards, role by role, through Flask's test client.

Each role sees exactly the pages and buttons its scopes allow, and a direct POST to any
action without the scope is refused with 403 before anything changes. An app-limited
user sees only its apps: any other app, license or key is 404. Sensitive actions need a
recent second factor.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from console_support import (
    create_person,
    make_console_app,
    post_form,
    session_cookie_for,
    signed_in_client,
)
from flask import Flask

from flask_licensechain.console.roles import ROLES, role_allows
from flask_licensechain.console.sessions import COOKIE_NAME
from flask_licensechain.services import webhooks as webhook_service
from flask_licensechain.state import get_issuer_state
from flask_licensechain.store import Actor

ACCOUNT = "/console/account"  # a page every signed-in user may open (for CSRF tokens)


# One app for the module: every test here only reads, or is refused (and checks so).
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_console_app(
        tmp_path_factory.mktemp("console"), LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE=True
    )


@pytest.fixture(scope="module")
def data(app: Flask) -> dict[str, Any]:
    store = get_issuer_state(app).store
    demo = store.apps.create("Demo", tier="pro")
    other = store.apps.create("Other")
    lic = store.licenses.create(demo.id, plan="pro", issued_email="a@example.test", max_devices=2)
    store.licenses.bind_device(lic.id, "device-1", lic.created_at)
    other_lic = store.licenses.create(other.id)
    key, _ = store.api_keys.create("CI key", ["licenses:read"], app_id=demo.id)
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    hook = webhook_service.create_endpoint(
        runtime,
        Actor(kind="system", id="test"),
        url="http://127.0.0.1:9/hook",
        events=None,
        app_id=demo.id,
    ).endpoint
    return {
        "app": demo,
        "other": other,
        "license": lic,
        "other_license": other_lic,
        "key": key,
        "webhook": hook,
    }


def pages(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, scope needed) of every page."""
    return [
        ("/console/overview", "licenses:read"),
        ("/console/apps", "apps:read"),
        (f"/console/apps/{d['app'].id}", "apps:read"),
        ("/console/licenses", "licenses:read"),
        (f"/console/licenses/{d['license'].id}", "licenses:read"),
        ("/console/api-keys", "api-keys:read"),
        ("/console/webhooks", "webhooks:read"),
        (f"/console/webhooks/{d['webhook'].id}", "webhooks:read"),
        ("/console/signing-keys", "apps:read"),
        ("/console/audit", "audit:read"),
        ("/console/users", "users:manage"),
    ]


def actions(d: dict[str, Any]) -> list[tuple[str, dict[str, str], str]]:
    """(path, form, scope needed) of every action."""
    lic = f"/console/licenses/{d['license'].id}"
    hook = f"/console/webhooks/{d['webhook'].id}"
    return [
        ("/console/apps", {"name": "New", "tier": "free"}, "apps:write"),
        (f"/console/apps/{d['app'].id}", {"name": "Renamed", "tier": "pro"}, "apps:write"),
        ("/console/licenses", {"app_id": d["app"].id, "max_devices": "1"}, "licenses:write"),
        (lic, {"plan": "gold", "features": "a"}, "licenses:write"),
        (f"{lic}/extend", {"expires_at": "2099-01-01"}, "licenses:write"),
        (f"{lic}/suspend", {}, "licenses:suspend"),
        (f"{lic}/activate", {}, "licenses:suspend"),
        (f"{lic}/devices/release", {"hwuid": "device-1"}, "devices:write"),
        (f"{lic}/revoke", {"reason": "test"}, "licenses:write"),
        (
            "/console/api-keys",
            {"name": "k", "role": "readonly", "environment": "live", "app_id": ""},
            "api-keys:write",
        ),
        (f"/console/api-keys/{d['key'].id}/revoke", {}, "api-keys:write"),
        ("/console/webhooks", {"url": "http://127.0.0.1:9/new", "app_id": ""}, "webhooks:write"),
        (f"{hook}/disable", {}, "webhooks:write"),
        (f"{hook}/enable", {}, "webhooks:write"),
        (f"{hook}/test", {}, "webhooks:write"),
        (f"{hook}/rotate-secret", {}, "webhooks:write"),
        (f"{hook}/deliveries/1/retry", {}, "webhooks:write"),
        (f"{hook}/delete", {}, "webhooks:write"),
        ("/console/signing-keys/rotate", {}, "keys:rotate"),
        ("/console/users", {"email": "new@example.test", "role": "support"}, "users:manage"),
    ]


def _nav_links(html: str) -> set[str]:
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', html, re.S)
    assert nav
    return set(re.findall(r'href="([^"]+)"', nav.group(1)))


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_exactly_the_pages_of_its_scopes(
    app: Flask, data: dict[str, Any], role: str
) -> None:
    client, _ = signed_in_client(app, role)
    links = _nav_links(client.get(ACCOUNT).get_data(as_text=True))
    for path, scope in pages(data):
        allowed = role_allows(role, scope)
        response = client.get(path)
        assert response.status_code == (200 if allowed else 403), (role, path)
        if path.count("/") == 2:  # a top-level page: in the navigation bar or not
            assert (path in links) == allowed, (role, path)


@pytest.mark.parametrize("role", ROLES)
def test_a_direct_post_without_the_scope_is_refused(
    app: Flask, data: dict[str, Any], role: str
) -> None:
    client, _ = signed_in_client(app, role)
    store = get_issuer_state(app).store
    for path, form, scope in actions(data):
        if role_allows(role, scope):
            continue
        before = (store.apps.list(), store.licenses.get(data["license"].id), store.api_keys.list())
        response = post_form(client, path, form, page=ACCOUNT)
        assert response.status_code == 403, (role, path)
        after = (store.apps.list(), store.licenses.get(data["license"].id), store.api_keys.list())
        assert after == before, (role, path)


@pytest.mark.parametrize("role", ROLES)
def test_buttons_a_role_may_not_use_are_hidden(app: Flask, data: dict[str, Any], role: str) -> None:
    client, _ = signed_in_client(app, role)
    license_page = client.get(f"/console/licenses/{data['license'].id}")
    if license_page.status_code == 200:
        html = license_page.get_data(as_text=True)
        assert ("/revoke" in html) == role_allows(role, "licenses:write")
        assert ("/suspend" in html) == role_allows(role, "licenses:suspend")
        assert ("/devices/release" in html) == role_allows(role, "devices:write")
    apps_page = client.get("/console/apps")
    if apps_page.status_code == 200:
        html = apps_page.get_data(as_text=True)
        assert ("Create an app" in html) == role_allows(role, "apps:write")
    keys_page = client.get("/console/api-keys")
    if keys_page.status_code == 200:
        html = keys_page.get_data(as_text=True)
        assert ("Create an API key" in html) == role_allows(role, "api-keys:write")
        assert ("/revoke" in html) == role_allows(role, "api-keys:write")
    signing = client.get("/console/signing-keys")
    if signing.status_code == 200:
        html = signing.get_data(as_text=True)
        assert ("/signing-keys/rotate" in html) == role_allows(role, "keys:rotate")


def test_support_cannot_see_the_api_keys_page(app: Flask, data: dict[str, Any]) -> None:
    client, _ = signed_in_client(app, "support")
    assert client.get("/console/api-keys").status_code == 403
    assert "/console/api-keys" not in _nav_links(client.get(ACCOUNT).get_data(as_text=True))
    form = {"name": "sneaky", "role": "owner", "environment": "live", "app_id": ""}
    assert post_form(client, "/console/api-keys", form, page=ACCOUNT).status_code == 403
    assert [key.name for key in get_issuer_state(app).store.api_keys.list()] == ["CI key"]


def test_signed_out_visitors_go_to_the_sign_in_page(app: Flask, data: dict[str, Any]) -> None:
    client = app.test_client()
    for path, _ in pages(data):
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/console/login" in response.headers["Location"]


def test_an_app_limited_user_sees_only_its_apps(app: Flask, data: dict[str, Any]) -> None:
    demo, other = data["app"], data["other"]
    client, _ = signed_in_client(app, "developer", app_ids=(demo.id,))
    listing = client.get("/console/apps").get_data(as_text=True)
    assert "Demo" in listing and "Other" not in listing
    assert client.get(f"/console/apps/{other.id}").status_code == 404
    assert client.get(f"/console/licenses/{data['other_license'].id}").status_code == 404
    assert client.get(f"/console/licenses/{data['other_license'].key}").status_code == 404
    assert client.get(f"/console/licenses/{data['license'].id}").status_code == 200
    licenses = client.get("/console/licenses").get_data(as_text=True)
    assert data["license"].key in licenses and data["other_license"].key not in licenses
    assert client.get(f"/console/licenses?app={other.id}").status_code == 404
    # actions on another app's objects are 404 too, and change nothing
    store = get_issuer_state(app).store
    other_lic = data["other_license"].id
    assert (
        post_form(client, f"/console/licenses/{other_lic}/revoke", {}, page=ACCOUNT).status_code
        == 404
    )
    assert store.licenses.get(other_lic).status == "ACTIVE"
    create = {"app_id": other.id, "max_devices": "1"}
    assert post_form(client, "/console/licenses", create, page=ACCOUNT).status_code in (400, 404)
    assert store.licenses.list(app_id=other.id)[1] == 1
    # creating apps and rotating the signing key are for users of every app
    assert (
        post_form(client, "/console/apps", {"name": "X", "tier": "free"}, page=ACCOUNT).status_code
        == 403
    )
    assert len(store.apps.list()) == 2


def test_sensitive_actions_need_a_recent_second_factor(app: Flask, data: dict[str, Any]) -> None:
    person = create_person(app, "owner")
    client = app.test_client()
    client.set_cookie(
        COOKIE_NAME, session_cookie_for(app, person, mfa_age=timedelta(hours=1)), path="/"
    )
    store = get_issuer_state(app).store
    keys_before = store.api_keys.list()
    active_before = store.signing_keys.active()
    form = {"name": "k", "role": "readonly", "environment": "live", "app_id": ""}
    for path, body in (
        ("/console/api-keys", form),
        ("/console/signing-keys/rotate", {}),
        (f"/console/users/{person.user.id}/role", {"role": "admin"}),
    ):
        response = post_form(client, path, body, page=ACCOUNT)
        assert response.status_code == 302, path
        assert "/console/reauth" in response.headers["Location"], path
    assert store.api_keys.list() == keys_before
    assert store.signing_keys.active() == active_before
