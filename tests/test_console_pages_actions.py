"""The business pages' actions, through Flask's test client: each goes through the service
layer (the same path as the API), is recorded in the audit log with the console user as
actor (its id and role, never its email), and bad input is a clear error, never a 500.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from console_support import make_console_app, post_form, signed_in_client
from flask import Flask
from flask.testing import FlaskClient

from flask_licensechain.console.state import console_state
from flask_licensechain.state import get_issuer_state

ACCOUNT = "/console/account"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_console_app(tmp_path)


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """One app for tests whose every request is refused."""
    return make_console_app(tmp_path_factory.mktemp("console"))


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None) -> Any:
    return post_form(client, path, data or {}, page=ACCOUNT)


def verify(app: Flask, key: str, **extra: str) -> dict[str, Any]:
    response = app.test_client().post("/v1/licenses/verify", json={"key": key, **extra})
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def last_event(app: Flask, action: str) -> Any:
    events = [e for e in get_issuer_state(app).store.audit.list(1000) if e.action == action]
    assert events, f"no {action} event"
    return events[0] if events[0].id > events[-1].id else events[-1]


def test_create_and_edit_an_app(app: Flask) -> None:
    client, person = signed_in_client(app, "owner")
    created = post(client, "/console/apps", {"name": "Rocket", "description": "d", "tier": "pro"})
    assert created.status_code == 303
    store = get_issuer_state(app).store
    (rocket,) = store.apps.list()
    assert (rocket.name, rocket.tier, rocket.description) == ("Rocket", "pro", "d")
    assert created.headers["Location"].endswith(f"/console/apps/{rocket.id}")
    event = last_event(app, "app.create")
    assert (event.actor_kind, event.actor, event.actor_name) == ("console", person.user.id, "owner")
    assert person.email not in repr(event.data) and person.email != event.actor_name
    edited = post(client, f"/console/apps/{rocket.id}", {"name": "Rocket 2", "tier": "enterprise"})
    assert edited.status_code == 303
    assert store.apps.get(rocket.id).tier == "enterprise"
    assert last_event(app, "app.update").data["changes"]["tier"] == ["pro", "enterprise"]
    # bad input: a clear 400 with the form again
    bad = post(client, "/console/apps", {"name": "", "tier": "platinum"})
    assert bad.status_code == 400
    assert len(store.apps.list()) == 1


def test_license_lifecycle_and_verify(app: Flask) -> None:
    client, person = signed_in_client(app, "owner")
    store = get_issuer_state(app).store
    demo = store.apps.create("Demo", tier="pro")
    created = post(
        client,
        "/console/licenses",
        {
            "app_id": demo.id,
            "plan": "pro",
            "features": "export, sync",
            "expires_at": "2099-12-31",
            "issued_to": "Ada",
            "issued_email": "ada@example.test",
            "max_devices": "2",
            "metadata": '{"order": 7}',
        },
    )
    assert created.status_code == 303, created.get_data(as_text=True)
    ((lic,), _) = store.licenses.list(app_id=demo.id)
    assert (lic.plan, lic.features, lic.max_devices, lic.metadata) == (
        "pro",
        ("export", "sync"),
        2,
        {"order": 7},
    )
    assert lic.expires_at is not None and lic.expires_at.year == 2099
    assert verify(app, lic.key, hwuid="machine-a")["valid"] is True
    page = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "machine-a" in page and lic.key in page

    # search by key, email and id
    for query in (lic.key, "ADA@example.test", lic.id):
        found = client.get("/console/licenses", query_string={"q": query}).get_data(as_text=True)
        assert lic.key in found, query
    none = client.get("/console/licenses", query_string={"q": "nobody@example.test"})
    assert none.status_code == 200 and lic.key not in none.get_data(as_text=True)

    base = f"/console/licenses/{lic.id}"
    assert (
        post(
            client, base, {"plan": "team", "features": "export", "expires_at": "2098-01-01"}
        ).status_code
        == 303
    )
    lic = store.licenses.get(lic.id)
    assert (lic.plan, lic.features, lic.expires_at.year) == ("team", ("export",), 2098)
    assert post(client, f"{base}/extend", {"expires_at": "2100-06-30"}).status_code == 303
    assert store.licenses.get(lic.id).expires_at.year == 2100
    assert post(client, f"{base}/suspend").status_code == 303
    assert verify(app, lic.key)["reason"] == "license_suspended"
    assert post(client, f"{base}/activate").status_code == 303
    assert post(client, f"{base}/devices/release", {"hwuid": "machine-a"}).status_code == 303
    assert store.licenses.get(lic.id).devices == ()
    assert post(client, f"{base}/devices/release", {"hwuid": "machine-a"}).status_code == 404
    assert post(client, f"{base}/revoke", {"reason": "chargeback"}).status_code == 303
    assert verify(app, lic.key)["reason"] == "license_revoked"
    # a revoked license stays revoked: 409 with the reason on the page
    refused = post(client, f"{base}/activate")
    assert refused.status_code == 409
    assert "revoked license cannot be activated" in refused.get_data(as_text=True)

    actions = [e.action for e in store.audit.list(1000)]
    for action in (
        "license.create",
        "license.update",
        "license.extend",
        "license.suspend",
        "license.activate",
        "device.release",
        "license.revoke",
    ):
        assert action in actions, action
        event = last_event(app, action)
        assert (event.actor_kind, event.actor) == ("console", person.user.id)


@pytest.mark.parametrize(
    "form",
    [
        {"max_devices": "0"},
        {"max_devices": "many"},
        {"metadata": "[1, 2]"},
        {"metadata": "{not json"},
        {"expires_at": "next tuesday"},
        {"features": ",".join(f"f{i}" for i in range(100))},
        {"app_id": "no-such-app"},
    ],
)
def test_bad_license_input_is_a_400(shared_app: Flask, form: dict[str, str]) -> None:
    client, _ = signed_in_client(shared_app, "owner")
    store = get_issuer_state(shared_app).store
    demo = store.apps.list()[0] if store.apps.list() else store.apps.create("Demo")
    body = {"app_id": demo.id, "max_devices": "1", **form}
    response = post(client, "/console/licenses", body)
    assert response.status_code == 400
    assert store.licenses.list()[1] == 0


def test_unknown_objects_are_404(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    for path in (
        "/console/apps/nope",
        "/console/licenses/nope",
        "/console/licenses/LC-AAAAAA-AAAAAA-AAAAAA",
    ):
        assert client.get(path).status_code == 404, path
    assert post(client, "/console/licenses/nope/revoke").status_code == 404
    assert post(client, "/console/api-keys/nope/revoke").status_code == 404


def test_api_key_is_shown_once_and_works(app: Flask) -> None:
    client, person = signed_in_client(app, "owner")
    store = get_issuer_state(app).store
    demo = store.apps.create("Demo")
    created = post(
        client,
        "/console/api-keys",
        {"name": "deploy bot", "role": "developer", "environment": "live", "app_id": demo.id},
    )
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    html = created.get_data(as_text=True)
    secret = re.search(r'id="new-api-key"[^>]*value="([^"]+)"', html)
    assert secret, html
    plaintext = secret.group(1)
    assert plaintext.startswith("lc_live_")
    # shown once: the list page never shows it again
    assert plaintext not in client.get("/console/api-keys").get_data(as_text=True)
    (record,) = store.api_keys.list()
    assert record.name == "deploy bot"
    event = last_event(app, "api_key.create")
    assert (event.actor_kind, event.actor) == ("console", person.user.id)
    assert plaintext not in repr(event.data)
    api = app.test_client()
    auth = {"Authorization": f"Bearer {plaintext}"}
    assert api.get(f"/v1/apps/{demo.id}", headers=auth).status_code == 200
    assert post(client, f"/console/api-keys/{record.id}/revoke").status_code == 303
    assert api.get(f"/v1/apps/{demo.id}", headers=auth).status_code == 401
    assert "api_key.revoke" in [e.action for e in store.audit.list(100)]


def test_a_user_cannot_create_a_key_beyond_its_role(app: Flask) -> None:
    client, _ = signed_in_client(app, "admin")
    page = client.get("/console/api-keys").get_data(as_text=True)
    assert '<option value="owner"' not in page
    refused = post(
        client,
        "/console/api-keys",
        {"name": "escalate", "role": "owner", "environment": "live", "app_id": ""},
    )
    assert refused.status_code == 400  # not a choice offered to this role
    assert get_issuer_state(app).store.api_keys.list() == []


def test_rotate_the_signing_key(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    store = get_issuer_state(app).store
    before = store.signing_keys.active()
    assert before is not None
    assert before.kid in client.get("/console/signing-keys").get_data(as_text=True)
    assert post(client, "/console/signing-keys/rotate").status_code == 303
    after = store.signing_keys.active()
    assert after is not None and after.kid != before.kid
    page = client.get("/console/signing-keys").get_data(as_text=True)
    assert after.kid in page and before.kid in page  # the old one is retiring
    assert last_event(app, "signing_key.rotate").target == after.kid


def test_users_invite_role_and_disable(app: Flask) -> None:
    client, owner = signed_in_client(app, "owner")
    invited = post(
        client,
        "/console/users",
        {"email": "new@example.test", "role": "support", "display_name": "Neo"},
    )
    assert invited.status_code == 201
    link = re.search(r'id="setup-link"[^>]*value="([^"]+)"', invited.get_data(as_text=True))
    assert link and "/console/setup/" in link.group(1)
    repo = console_state(app).repo
    neo = repo.find_user_by_email("new@example.test")
    assert neo is not None and neo.role == "support"
    assert link.group(1) not in client.get("/console/users").get_data(as_text=True)
    assert post(client, f"/console/users/{neo.id}/role", {"role": "auditor"}).status_code == 303
    assert repo.get_user(neo.id).role == "auditor"
    assert post(client, f"/console/users/{neo.id}/role", {"role": "emperor"}).status_code == 400
    assert post(client, f"/console/users/{neo.id}/disable").status_code == 303
    assert repo.get_user(neo.id).disabled
    assert post(client, f"/console/users/{neo.id}/enable").status_code == 303
    assert not repo.get_user(neo.id).disabled
    # nobody changes their own role or disables themselves here
    assert (
        post(client, f"/console/users/{owner.user.id}/role", {"role": "readonly"}).status_code
        == 409
    )
    assert post(client, f"/console/users/{owner.user.id}/disable").status_code == 409
    assert repo.get_user(owner.user.id).role == "owner"
    assert (
        post(client, "/console/users", {"email": "not-an-email", "role": "support"}).status_code
        == 400
    )
    assert (
        post(client, "/console/users", {"email": "new@example.test", "role": "support"}).status_code
        == 409
    )


@pytest.mark.postgres
def test_search_edit_and_revoke_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    app = make_console_app(tmp_path, postgres_url)
    try:
        _search_edit_and_revoke(app)
    finally:
        get_issuer_state(app).store.dispose()


def _search_edit_and_revoke(app: Flask) -> None:
    client, person = signed_in_client(app, "admin")
    store = get_issuer_state(app).store
    demo = store.apps.create("Demo")
    lic = store.licenses.create(demo.id, issued_email="Grace@Example.test", features=["a"])
    found = client.get("/console/licenses", query_string={"q": "grace@example.TEST"})
    assert lic.key in found.get_data(as_text=True)
    base = f"/console/licenses/{lic.id}"
    assert post(client, base, {"plan": "team", "features": "a, b"}).status_code == 303
    assert post(client, f"{base}/revoke", {"reason": "fraud"}).status_code == 303
    assert verify(app, lic.key)["reason"] == "license_revoked"
    event = last_event(app, "license.revoke")
    assert (event.actor_kind, event.actor, event.actor_name) == ("console", person.user.id, "admin")
    audit = client.get("/console/audit", query_string={"action": "license.revoke"})
    assert audit.status_code == 200 and lic.id in audit.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/licenses?status=bogus", 400),
        ("/console/licenses?page=-1", 200),
        ("/console/licenses?page=99999999999999999999", 200),
        ("/console/licenses?q=" + "x" * 5000, 400),
        ("/console/licenses?app=nope", 404),
        ("/console/audit?cursor=not-a-cursor", 400),
        ("/console/audit?since=2027-13-45", 400),
        ("/console/audit?until=yesterday", 400),
        ("/console/audit?action=" + "a" * 500, 400),
    ],
)
def test_bad_queries_are_client_errors(shared_app: Flask, path: str, status: int) -> None:
    client, _ = signed_in_client(shared_app, "owner")
    response = client.get(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"
