"""The API-key lifecycle over HTTP and the CLI: list (never the secret), show, create with a
role or scopes, apps and expiry, update, rotate with a grace period, revoke, expiry; every
change recorded as an ``api_key.*`` change in its transaction; hostile attempts to get more
rights than the caller holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, error_body, make_issuer

from flask_licensechain.store import Actor, Change
from flask_licensechain.store.schema import api_keys

pytest_plugins = ["issuer_fixtures"]

KEY_FIELDS = {
    "id",
    "name",
    "description",
    "prefix",
    "environment",
    "role",
    "scopes",
    "appIds",
    "appId",
    "status",
    "createdAt",
    "expiresAt",
    "lastUsedAt",
    "lastUsedIp",
    "usageCount",
    "revokedAt",
    "previousKeyExpiresAt",
}


@pytest.fixture
def sqlite_issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    try:
        yield made
    finally:
        close_issuer(made)


@pytest.fixture
def changes(sqlite_issuer: Issuer) -> list[tuple[Actor, Change]]:
    """Every change recorded from now on, with its actor."""
    seen: list[tuple[Actor, Change]] = []
    sqlite_issuer.store.changes.add_listener(
        lambda _conn, actor, change: seen.append((actor, change))
    )
    return seen


def call(issuer: Issuer, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    return issuer.client.open(path, method=method, json=body, headers=issuer.auth(key))


def create(issuer: Issuer, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    response = call(issuer, "POST", "/v1/api-keys", body, key)
    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    created: dict[str, Any] = response.get_json()
    return created


def authed(issuer: Issuer, key: str, path: str = "/v1/apps") -> Any:
    return issuer.client.get(path, headers=issuer.auth(key))


# -- create, list, show -------------------------------------------------------------------


def test_create_with_a_role_list_and_show_never_the_secret(
    issuer: Issuer,
) -> None:
    app = issuer.new_app()
    expires = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    made = create(
        issuer,
        {
            "name": "support desk",
            "description": "for the help desk",
            "role": "support",
            "appIds": [app.id],
            "expiresAt": expires.isoformat(),
        },
    )
    assert set(made) == KEY_FIELDS | {"key"}
    assert made["role"] == "support" and made["appIds"] == [app.id] and made["appId"] == app.id
    assert made["scopes"] == ["apps:read", "licenses:read", "licenses:suspend", "devices:write"]
    assert made["expiresAt"] == expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert made["status"] == "active" and made["usageCount"] == 0
    secret = made["key"]
    assert authed(issuer, secret).status_code == 200
    issuer.store.api_keys.usage.flush()

    listed = call(issuer, "GET", "/v1/api-keys")
    assert listed.status_code == 200
    text = listed.get_data(as_text=True)
    assert secret not in text and secret[12:] not in text
    mine = [k for k in listed.get_json()["apiKeys"] if k["id"] == made["id"]]
    assert len(mine) == 1 and set(mine[0]) == KEY_FIELDS
    assert listed.get_json()["total"] == len(listed.get_json()["apiKeys"])

    shown = call(issuer, "GET", f"/v1/api-keys/{made['id']}").get_json()
    assert secret not in json.dumps(shown)
    assert shown["name"] == "support desk" and shown["description"] == "for the help desk"
    assert shown["usageCount"] == 1 and shown["lastUsedIp"] == "127.0.0.1"
    assert shown["lastUsedAt"] is not None
    error_body(call(issuer, "GET", "/v1/api-keys/key_missing"), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "x", "role": "root"},
        {"name": "x", "role": "owner", "scopes": ["*"]},
        {"name": "x", "scopes": ["apps:read"], "appIds": []},
        {"name": "x", "scopes": ["apps:read"], "appIds": "app_1"},
        {"name": "x", "scopes": ["apps:read"], "expiresAt": "2001-01-01T00:00:00Z"},
        {"name": "x", "scopes": ["apps:read"], "expiresAt": "soon"},
        {"name": "x", "scopes": ["apps:read"], "bogus": 1},
    ],
)
def test_bad_create_bodies_are_400(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    before = sqlite_issuer.snapshot()
    error_body(call(sqlite_issuer, "POST", "/v1/api-keys", body), 400, "invalid_request")
    assert sqlite_issuer.snapshot() == before


def test_an_unknown_app_is_404(sqlite_issuer: Issuer) -> None:
    body = {"name": "x", "scopes": ["apps:read"], "appIds": ["app_missing"]}
    error_body(call(sqlite_issuer, "POST", "/v1/api-keys", body), 404, "not_found")


# -- hostile: no more rights than your own ---------------------------------------------------


@pytest.mark.parametrize(
    "wanted",
    [
        {"role": "owner"},
        {"scopes": ["*"]},
        {"scopes": ["keys:rotate"]},
        {"role": "admin"},
        {"scopes": ["apps:read"], "environment": "live"},  # from a test key: see below
        {"scopes": ["apps:read"], "appIds": ["OTHER"]},
        {"scopes": ["apps:read"], "appIds": ["MINE", "OTHER"]},
        {"scopes": ["apps:read"], "expiresAt": "2100-01-01T00:00:00Z"},
    ],
)
def test_no_key_creates_a_key_with_more_rights(
    sqlite_issuer: Issuer, wanted: dict[str, Any]
) -> None:
    issuer = sqlite_issuer
    mine = issuer.store.apps.create("Mine", mode="test")
    other = issuer.store.apps.create("Other", mode="test")
    creator, secret = issuer.store.api_keys.create(
        "limited",
        ["api-keys:write", "apps:read", "licenses:read"],
        environment="test",
        app_ids=[mine.id],
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    body = {"name": "escalate", **wanted}
    if "appIds" in body:
        body["appIds"] = [mine.id if a == "MINE" else other.id for a in body["appIds"]]
    before = issuer.snapshot()
    response = call(issuer, "POST", "/v1/api-keys", body, secret)
    error_body(response, 403, "insufficient_scope")
    assert issuer.snapshot() == before
    # Within its rights it works, and the new key inherits its app restriction.
    made = create(
        issuer,
        {"name": "ok", "scopes": ["apps:read"], "expiresAt": creator.expires_at.isoformat()},
        secret,
    )
    assert made["appIds"] == [mine.id] and made["environment"] == "test"


def test_admin_cannot_touch_an_owner_key_and_a_limited_key_cannot_see_wider_keys(
    sqlite_issuer: Issuer,
) -> None:
    issuer = sqlite_issuer
    owner, _ = issuer.store.api_keys.create("owner", role="owner")
    _, admin = issuer.store.api_keys.create("admin", role="admin")
    for method, path in [
        ("POST", f"/v1/api-keys/{owner.id}/revoke"),
        ("POST", f"/v1/api-keys/{owner.id}/rotate"),
        ("PATCH", f"/v1/api-keys/{owner.id}"),
    ]:
        error_body(call(issuer, method, path, {}, admin), 403, "insufficient_scope")
    assert issuer.store.api_keys.get(owner.id).revoked_at is None
    # An app-limited key does not even see keys beyond its apps: 404, as for no key at all.
    app = issuer.new_app()
    _, limited = issuer.store.api_keys.create("limited", ["*"], app_ids=[app.id])
    listed = call(issuer, "GET", "/v1/api-keys", key=limited).get_json()
    assert owner.id not in {k["id"] for k in listed["apiKeys"]}
    for method, path in [
        ("GET", f"/v1/api-keys/{owner.id}"),
        ("POST", f"/v1/api-keys/{owner.id}/revoke"),
        ("POST", f"/v1/api-keys/{owner.id}/rotate"),
    ]:
        error_body(call(issuer, method, path, {}, limited), 404, "not_found")


# -- update, revoke ----------------------------------------------------------------------------


def test_update_and_revoke_record_their_changes(
    sqlite_issuer: Issuer, changes: list[tuple[Actor, Change]]
) -> None:
    issuer = sqlite_issuer
    made = create(issuer, {"name": "ci", "scopes": ["apps:read"]})
    updated = call(
        issuer, "PATCH", f"/v1/api-keys/{made['id']}", {"name": "ci-2", "description": "d"}
    ).get_json()
    assert (updated["name"], updated["description"]) == ("ci-2", "d")
    error_body(
        call(issuer, "PATCH", f"/v1/api-keys/{made['id']}", {"scopes": ["*"]}),
        400,
        "invalid_request",
    )
    revoked = call(issuer, "POST", f"/v1/api-keys/{made['id']}/revoke", {})
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    again = call(issuer, "POST", f"/v1/api-keys/{made['id']}/revoke", {})
    assert again.status_code == 200  # idempotent
    error_body(authed(issuer, made["key"]), 401, "unauthorized")
    actions = [(c.action, c.target) for _, c in changes]
    assert actions == [
        ("api_key.create", made["id"]),
        ("api_key.update", made["id"]),
        ("api_key.revoke", made["id"]),
    ]
    update = changes[1][1]
    assert update.data == {"changes": {"description": [None, "d"], "name": ["ci", "ci-2"]}}
    actor = changes[0][0]
    assert actor.kind == "api_key" and actor.ip == "127.0.0.1"
    assert all(made["key"] not in json.dumps(c.data) for _, c in changes)


def test_a_failing_change_listener_rolls_the_key_back(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    made = create(issuer, {"name": "ci", "scopes": ["apps:read"]})

    def broken(_conn: Any, _actor: Actor, change: Change) -> None:
        if change.action == "api_key.revoke":
            raise RuntimeError("audit store down")

    issuer.store.changes.add_listener(broken)
    response = call(issuer, "POST", f"/v1/api-keys/{made['id']}/revoke", {})
    assert response.status_code == 500
    assert issuer.store.api_keys.get(made["id"]).revoked_at is None  # no unrecorded change
    assert authed(issuer, made["key"]).status_code == 200


# -- expiry ------------------------------------------------------------------------------------


def test_an_expired_key_is_401_saying_it_expired(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    record, secret = issuer.store.api_keys.create(
        "short", ["apps:read"], expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    assert authed(issuer, secret).status_code == 200
    with issuer.store.engine.begin() as conn:
        conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.id == record.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = authed(issuer, secret)
    body = error_body(response, 401, "unauthorized")
    assert "expired" in body["message"]
    assert 'error_description="expired"' in response.headers["WWW-Authenticate"]
    shown = call(issuer, "GET", f"/v1/api-keys/{record.id}").get_json()
    assert shown["status"] == "expired"


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_keeps_the_old_secret_for_the_grace_period_then_it_dies(
    sqlite_issuer: Issuer, changes: list[tuple[Actor, Change]]
) -> None:
    issuer = sqlite_issuer
    made = create(issuer, {"name": "ci", "scopes": ["apps:read"]})
    old = made["key"]
    response = call(issuer, "POST", f"/v1/api-keys/{made['id']}/rotate", {})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    rotated = response.get_json()
    new = rotated["key"]
    assert new != old and rotated["id"] == made["id"]
    grace_end = datetime.fromisoformat(rotated["previousKeyExpiresAt"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < grace_end - datetime.now(UTC) <= timedelta(hours=24)
    assert authed(issuer, old).status_code == 200
    assert authed(issuer, new).status_code == 200
    assert new not in call(issuer, "GET", "/v1/api-keys").get_data(as_text=True)
    # The grace period ends: the old secret dies, the new one lives.
    with issuer.store.engine.begin() as conn:
        conn.execute(
            sa.update(api_keys).values(previous_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    error_body(authed(issuer, old), 401, "unauthorized")
    assert authed(issuer, new).status_code == 200
    assert changes[-1][1].action == "api_key.rotate"
    assert changes[-1][1].data["graceSeconds"] == 86400


def test_rotation_with_no_grace_and_twice_in_a_row(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    made = create(issuer, {"name": "ci", "scopes": ["apps:read"]})
    first = made["key"]
    second = call(
        issuer, "POST", f"/v1/api-keys/{made['id']}/rotate", {"gracePeriodSeconds": 3600}
    ).get_json()["key"]
    third = call(issuer, "POST", f"/v1/api-keys/{made['id']}/rotate", {}).get_json()["key"]
    # Rotating again ends the older previous secret at once.
    error_body(authed(issuer, first), 401, "unauthorized")
    assert authed(issuer, second).status_code == 200
    fourth = call(
        issuer, "POST", f"/v1/api-keys/{made['id']}/rotate", {"gracePeriodSeconds": 0}
    ).get_json()
    assert fourth["previousKeyExpiresAt"] is None
    for dead in (second, third):
        error_body(authed(issuer, dead), 401, "unauthorized")
    assert authed(issuer, fourth["key"]).status_code == 200
    for bad in ({"gracePeriodSeconds": -1}, {"gracePeriodSeconds": 10**9}, {"x": 1}):
        error_body(
            call(issuer, "POST", f"/v1/api-keys/{made['id']}/rotate", bad), 400, "invalid_request"
        )
    call(issuer, "POST", f"/v1/api-keys/{made['id']}/revoke", {})
    error_body(call(issuer, "POST", f"/v1/api-keys/{made['id']}/rotate", {}), 409, "conflict")
    error_body(authed(issuer, fourth["key"]), 401, "unauthorized")


def test_a_key_may_rotate_itself(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    record, secret = issuer.store.api_keys.create("self", ["api-keys:write"])
    rotated = call(issuer, "POST", f"/v1/api-keys/{record.id}/rotate", {}, secret)
    assert rotated.status_code == 200
    assert issuer.client.get("/v1/api-keys", headers=issuer.auth(secret)).status_code == 200


# -- the SDK-compatible app key ------------------------------------------------------------------


def test_regenerate_key_records_the_revocation_and_the_creation(
    sqlite_issuer: Issuer, changes: list[tuple[Actor, Change]]
) -> None:
    issuer = sqlite_issuer
    app = issuer.new_app()
    first = call(issuer, "POST", f"/v1/apps/{app.id}/regenerate-key").get_json()
    second = call(issuer, "POST", f"/v1/apps/{app.id}/regenerate-key").get_json()
    assert second["revokedKeyIds"] == [first["id"]]
    assert [c.action for _, c in changes] == ["api_key.create", "api_key.revoke", "api_key.create"]
    assert changes[-1][1].app_id == app.id


# -- the CLI -------------------------------------------------------------------------------------


def run_json(issuer: Issuer, *args: str) -> dict[str, Any]:
    result = issuer.app.test_cli_runner().invoke(args=["licensechain", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_cli_lifecycle(sqlite_issuer: Issuer, changes: list[tuple[Actor, Change]]) -> None:
    issuer = sqlite_issuer
    app = issuer.new_app()
    made = run_json(
        issuer,
        "api-keys",
        "create",
        "--name",
        "ops",
        "--role",
        "readonly",
        "--app",
        app.id,
        "--expires",
        "2100-01-01T00:00:00Z",
        "--description",
        "night shift",
    )
    secret = made["key"]
    assert made["role"] == "readonly" and made["appIds"] == [app.id]
    assert made["expiresAt"] == "2100-01-01T00:00:00.000Z"
    assert authed(issuer, secret).status_code == 200
    listed = run_json(issuer, "api-keys", "list")
    assert secret not in json.dumps(listed)
    assert made["id"] in {k["id"] for k in listed["apiKeys"]}
    shown = run_json(issuer, "api-keys", "show", made["id"])
    assert shown["description"] == "night shift" and shown["usageCount"] == 1
    rotated = run_json(issuer, "api-keys", "rotate", made["id"], "--grace", "0")
    assert rotated["key"] != secret
    error_body(authed(issuer, secret), 401, "unauthorized")
    revoked = run_json(issuer, "api-keys", "revoke", made["id"])
    assert revoked["status"] == "revoked"
    error_body(authed(issuer, rotated["key"]), 401, "unauthorized")
    assert [c.action for _, c in changes] == ["api_key.create", "api_key.rotate", "api_key.revoke"]
    assert {a.kind for a, _ in changes} == {"cli"}
    # Errors are one JSON object.
    result = issuer.app.test_cli_runner().invoke(
        args=["licensechain", "api-keys", "show", "key_missing", "--json"]
    )
    assert result.exit_code == 1 and json.loads(result.output)["error"] == "not_found"
    result = issuer.app.test_cli_runner().invoke(
        args=["licensechain", "create-api-key", "--name", "x", "--json"]
    )
    assert result.exit_code == 2 and json.loads(result.output)["error"] == "usage_error"


def test_cli_create_api_key_with_a_role(sqlite_issuer: Issuer) -> None:
    data = run_json(sqlite_issuer, "create-api-key", "--name", "aud", "--role", "auditor")
    assert set(data) == {"id", "key", "scopes"} and data["scopes"] == ["audit:read"]
