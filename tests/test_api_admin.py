"""The authenticated endpoints: API-key auth and scopes, apps, licenses, devices, revocation."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from contract_fields import APP_FIELDS, LICENSE_FIELDS
from issuer_support import (
    Issuer,
    close_issuer,
    decode_unverified,
    error_body,
    make_issuer,
)

from flask_licensechain.core.errors import InvalidToken
from flask_licensechain.roles import IMPLIED

pytest_plugins = ["issuer_fixtures"]  # the issuer fixtures

KEY_PATTERN = re.compile(r"^LC-[A-Z0-9]{6}-[A-Z0-9]{6}-[A-Z0-9]{6}$")

#: (method, path template, scope) of every authenticated endpoint
ENDPOINTS = [
    ("POST", "/v1/licenses/revoke-token", "tokens:revoke"),
    ("POST", "/v1/apps", "apps:write"),
    ("GET", "/v1/apps", "apps:read"),
    ("GET", "/v1/apps/{app}", "apps:read"),
    ("POST", "/v1/apps/{app}/licenses", "licenses:write"),
    ("GET", "/v1/apps/{app}/licenses", "licenses:read"),
    ("GET", "/v1/licenses", "licenses:read"),
    ("GET", "/v1/licenses/{lic}", "licenses:read"),
    ("PATCH", "/v1/licenses/{lic}", "licenses:write"),
    ("PATCH", "/v1/licenses/{lic}/revoke", "licenses:write"),
    ("PATCH", "/v1/licenses/{lic}/suspend", "licenses:suspend"),
    ("PATCH", "/v1/licenses/{lic}/activate", "licenses:suspend"),
    ("PATCH", "/v1/licenses/{lic}/extend", "licenses:write"),
    ("DELETE", "/v1/licenses/{lic}/devices/m1", "devices:write"),
    ("POST", "/v1/signing-keys/rotate", "keys:rotate"),
    ("POST", "/v1/api-keys", "api-keys:write"),
]


@pytest.fixture
def admin_target(sqlite_issuer: Issuer) -> dict[str, str]:
    lic = sqlite_issuer.new_license()
    return {"app": lic.app_id, "lic": lic.id}


def _call(issuer: Issuer, method: str, path: str, **kwargs: Any) -> Any:
    return issuer.client.open(path, method=method, **kwargs)


# -- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "template", "scope"), ENDPOINTS)
def test_no_key_is_401_with_challenge(
    sqlite_issuer: Issuer, admin_target: dict[str, str], method: str, template: str, scope: str
) -> None:
    before = sqlite_issuer.snapshot()
    response = _call(sqlite_issuer, method, template.format(**admin_target), json={})
    error_body(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="licensechain"'
    assert sqlite_issuer.snapshot() == before


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer lc_live_" + "x" * 43,  # well-formed, unknown
        "Bearer garbage",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer lc_live_" + "x" * 600,
        "lc_live_abc",
    ],
)
@pytest.mark.parametrize(("method", "template", "scope"), ENDPOINTS[:4])
def test_bad_key_is_401(
    sqlite_issuer: Issuer,
    admin_target: dict[str, str],
    authorization: str,
    method: str,
    template: str,
    scope: str,
) -> None:
    response = _call(
        sqlite_issuer,
        method,
        template.format(**admin_target),
        json={},
        headers={"Authorization": authorization},
    )
    error_body(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="licensechain"')


def test_revoked_key_is_401(sqlite_issuer: Issuer) -> None:
    key = sqlite_issuer.api_key("apps:read")
    assert sqlite_issuer.client.get("/v1/apps", headers=sqlite_issuer.auth(key)).status_code == 200
    record = sqlite_issuer.store.api_keys.authenticate(key)
    sqlite_issuer.store.api_keys.revoke(record.id)
    response = sqlite_issuer.client.get("/v1/apps", headers=sqlite_issuer.auth(key))
    error_body(response, 401, "unauthorized")


@pytest.mark.parametrize(("method", "template", "scope"), ENDPOINTS)
def test_missing_scope_is_403_and_the_right_scope_passes_auth(
    sqlite_issuer: Issuer, admin_target: dict[str, str], method: str, template: str, scope: str
) -> None:
    # Every other endpoint's scope, but none that implies this one (licenses:write grants
    # licenses:suspend and devices:write).
    others = [s for _, _, s in ENDPOINTS if s != scope and scope not in IMPLIED.get(s, ())]
    wrong = sqlite_issuer.api_key(*sorted(set(others)))
    before = sqlite_issuer.snapshot()
    path = template.format(**admin_target)
    response = _call(sqlite_issuer, method, path, json={}, headers=sqlite_issuer.auth(wrong))
    body = error_body(response, 403, "insufficient_scope")
    assert scope in body["message"]
    assert sqlite_issuer.snapshot() == before
    right = sqlite_issuer.api_key(scope)
    response = _call(sqlite_issuer, method, path, json={}, headers=sqlite_issuer.auth(right))
    assert response.status_code not in (401, 403)


def test_lowercase_bearer_scheme_is_accepted(sqlite_issuer: Issuer) -> None:
    headers = {"Authorization": f"bearer {sqlite_issuer.admin_key}"}
    assert sqlite_issuer.client.get("/v1/apps", headers=headers).status_code == 200


# -- apps ----------------------------------------------------------------------------------


def test_apps_create_list_get(issuer: Issuer) -> None:
    response = issuer.post(
        "/v1/apps",
        {"name": "My App", "description": "d", "tier": "business"},
        headers=issuer.auth(),
    )
    assert response.status_code == 201
    app = response.get_json()
    assert set(app) == APP_FIELDS
    assert app["name"] == "My App"
    assert app["slug"] == "my-app"
    assert app["description"] == "d"
    assert app["tier"] == "business"
    assert app["verificationType"] == "custom"
    assert app["id"].startswith("app_")
    default = issuer.post("/v1/apps", {"name": "My App"}, headers=issuer.auth()).get_json()
    assert default["tier"] == "free"
    assert default["verificationType"] == "basic"
    assert default["slug"] != app["slug"]
    listed = issuer.client.get("/v1/apps", headers=issuer.auth()).get_json()
    assert [a["id"] for a in listed["apps"]] == [app["id"], default["id"]]
    one = issuer.client.get(f"/v1/apps/{app['id']}", headers=issuer.auth())
    assert one.status_code == 200
    assert one.get_json() == app
    error_body(issuer.client.get("/v1/apps/app_nope", headers=issuer.auth()), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": 5},
        {"name": "x", "tier": "platinum"},
        {"name": "x", "tier": 1},
        {"name": "x", "description": []},
        {"name": "x", "colour": "red"},
        {"name": "x" * 201},
    ],
)
def test_apps_create_rejects_bad_bodies(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    before = sqlite_issuer.snapshot()
    error_body(
        sqlite_issuer.post("/v1/apps", body, headers=sqlite_issuer.auth()), 400, "invalid_request"
    )
    assert sqlite_issuer.snapshot() == before


# -- licenses ------------------------------------------------------------------------------


def _create(issuer: Issuer, app_id: str, body: dict[str, Any] | None = None) -> Any:
    return issuer.post(f"/v1/apps/{app_id}/licenses", body or {}, headers=issuer.auth())


def test_license_create_defaults(issuer: Issuer) -> None:
    app = issuer.new_app()
    response = issuer.client.post(f"/v1/apps/{app.id}/licenses", headers=issuer.auth())
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    lic = response.get_json()
    assert set(lic) == LICENSE_FIELDS
    assert KEY_PATTERN.match(lic["key"])
    assert lic["licenseKey"] == lic["key"]
    assert lic["appId"] == app.id
    assert lic["status"] == "ACTIVE"
    assert lic["maxDevices"] == 1
    assert lic["requireHwuid"] is False
    assert lic["features"] == []
    assert lic["metadata"] == {}
    assert lic["devices"] == []
    assert lic["plan"] is None and lic["expiresAt"] is None
    assert lic["email"] is None and lic["issuedTo"] is None and lic["issuedEmail"] is None


def test_license_create_all_fields(issuer: Issuer) -> None:
    app = issuer.new_app()
    body = {
        "plan": "pro",
        "issuedTo": "Ada",
        "issuedEmail": "ada@example.com",
        "expiresAt": "2031-05-06T07:08:09Z",
        "features": ["a", "b", "a"],
        "metadata": {"order": 12, "tags": ["x"]},
        "maxDevices": 3,
        "requireHwuid": True,
    }
    lic = _create(issuer, app.id, body).get_json()
    assert lic["plan"] == "pro"
    assert lic["issuedTo"] == "Ada"
    assert lic["issuedEmail"] == lic["email"] == "ada@example.com"
    assert lic["expiresAt"] == "2031-05-06T07:08:09.000Z"
    assert lic["features"] == ["a", "b"]
    assert lic["metadata"] == {"order": 12, "tags": ["x"]}
    assert lic["maxDevices"] == 3
    assert lic["requireHwuid"] is True
    fetched = issuer.client.get(f"/v1/licenses/{lic['id']}", headers=issuer.auth()).get_json()
    assert fetched == lic
    by_key = issuer.client.get(f"/v1/licenses/{lic['key']}", headers=issuer.auth()).get_json()
    assert by_key == lic


def test_license_create_for_missing_app_is_404(issuer: Issuer) -> None:
    before = issuer.snapshot()
    error_body(_create(issuer, "app_missing", {"plan": "x"}), 404, "not_found")
    assert issuer.snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"maxDevices": 0},
        {"maxDevices": "2"},
        {"maxDevices": True},
        {"maxDevices": 10**12},
        {"requireHwuid": "yes"},
        {"features": "a"},
        {"features": [1]},
        {"features": [""]},
        {"metadata": []},
        {"expiresAt": "tomorrow"},
        {"expiresAt": True},
        {"plan": 7},
        {"status": "ACTIVE"},
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA"},
        {"issuedEmail": "x" * 400},
        {"maxDevices": None},
    ],
)
def test_license_create_rejects_bad_fields(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    app = sqlite_issuer.new_app()
    before = sqlite_issuer.snapshot()
    error_body(_create(sqlite_issuer, app.id, body), 400, "invalid_request")
    assert sqlite_issuer.snapshot() == before


def test_license_lists_and_pagination(issuer: Issuer) -> None:
    app = issuer.new_app()
    other = issuer.new_app(name="Other")
    ids = [_create(issuer, app.id).get_json()["id"] for _ in range(5)]
    _create(issuer, other.id)
    expired = _create(issuer, app.id, {"expiresAt": "2001-01-01T00:00:00Z"}).get_json()
    suspended = issuer.client.patch(f"/v1/licenses/{ids[0]}/suspend", headers=issuer.auth())
    assert suspended.status_code == 200

    page = issuer.client.get(f"/v1/apps/{app.id}/licenses?limit=2&page=2", headers=issuer.auth())
    body = page.get_json()
    assert set(body) == {"licenses", "total", "page", "limit"}
    assert (body["total"], body["page"], body["limit"]) == (6, 2, 2)
    assert len(body["licenses"]) == 2
    assert all(set(lic) == LICENSE_FIELDS for lic in body["licenses"])

    everything = issuer.client.get("/v1/licenses", headers=issuer.auth()).get_json()
    assert (everything["total"], everything["page"], everything["limit"]) == (7, 1, 50)

    def ids_for(query: str) -> set[str]:
        data = issuer.client.get(f"/v1/licenses?{query}", headers=issuer.auth()).get_json()
        return {lic["id"] for lic in data["licenses"]}

    assert ids_for(f"app_id={app.id}&status=EXPIRED") == {expired["id"]}
    assert ids_for(f"app_id={app.id}&status=suspended") == {ids[0]}
    assert ids_for(f"app_id={app.id}&status=ACTIVE") == set(ids[1:])
    assert ids_for(f"app_id={other.id}&status=REVOKED") == set()
    error_body(
        issuer.client.get("/v1/apps/app_missing/licenses", headers=issuer.auth()),
        404,
        "not_found",
    )


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=x",
        "limit=0",
        "limit=101",
        "limit=1.5",
        "status=GONE",
        "page=99999999999",
        "limit=%00",
    ],
)
def test_license_list_rejects_bad_query(sqlite_issuer: Issuer, query: str) -> None:
    response = sqlite_issuer.client.get(f"/v1/licenses?{query}", headers=sqlite_issuer.auth())
    error_body(response, 400, "invalid_request")


def test_license_get_missing_is_404(sqlite_issuer: Issuer) -> None:
    for ref in ("lic_nope", "LC-AAAAAA-AAAAAA-AAAAAA", "x" * 300):
        response = sqlite_issuer.client.get(f"/v1/licenses/{ref}", headers=sqlite_issuer.auth())
        error_body(response, 404, "not_found")


def test_license_patch_camel_and_snake(issuer: Issuer) -> None:
    lic = issuer.new_license()
    path = f"/v1/licenses/{lic.id}"
    camel = issuer.client.patch(
        path, json={"plan": "gold", "maxDevices": 4, "issuedTo": "Bo"}, headers=issuer.auth()
    )
    assert camel.status_code == 200
    body = camel.get_json()
    assert (body["plan"], body["maxDevices"], body["issuedTo"]) == ("gold", 4, "Bo")
    snake = issuer.client.patch(
        path,
        json={
            "max_devices": 2,
            "require_hwuid": True,
            "issued_email": "b@x.io",
            "expires_at": "2040-01-01T00:00:00+02:00",
        },
        headers=issuer.auth(),
    ).get_json()
    assert (snake["maxDevices"], snake["requireHwuid"], snake["email"]) == (2, True, "b@x.io")
    assert snake["expiresAt"] == "2039-12-31T22:00:00.000Z"
    assert snake["plan"] == "gold"  # untouched fields stay
    cleared = issuer.client.patch(
        path, json={"plan": None, "expiresAt": None}, headers=issuer.auth()
    ).get_json()
    assert cleared["plan"] is None and cleared["expiresAt"] is None
    unchanged = issuer.client.patch(path, json={}, headers=issuer.auth())
    assert unchanged.status_code == 200
    assert unchanged.get_json()["maxDevices"] == 2


@pytest.mark.parametrize(
    "body", [{"status": "EXPIRED"}, {"maxDevices": -1}, {"unknown": 1}, {"features": None}]
)
def test_license_patch_rejects_bad_bodies(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    lic = sqlite_issuer.new_license()
    before = sqlite_issuer.snapshot()
    response = sqlite_issuer.client.patch(
        f"/v1/licenses/{lic.id}", json=body, headers=sqlite_issuer.auth()
    )
    error_body(response, 400, "invalid_request")
    assert sqlite_issuer.snapshot() == before


def test_license_patch_missing_is_404(sqlite_issuer: Issuer) -> None:
    for body in ({"plan": "x"}, {}):
        response = sqlite_issuer.client.patch(
            "/v1/licenses/lic_missing", json=body, headers=sqlite_issuer.auth()
        )
        error_body(response, 404, "not_found")


# -- status changes and the denylist -------------------------------------------------------


def _patch(issuer: Issuer, license_id: str, action: str, body: Any = None) -> Any:
    return issuer.client.patch(
        f"/v1/licenses/{license_id}/{action}", json=body, headers=issuer.auth()
    )


def test_revoke_denylists_the_license(denylisted_issuer: Issuer) -> None:
    issuer = denylisted_issuer
    lic = issuer.new_license()
    token = issuer.token_for(lic.key)
    response = _patch(issuer, lic.id, "revoke", {"reason": "chargeback"})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == LICENSE_FIELDS
    assert body["status"] == "REVOKED"
    # the gate's verifier refuses the outstanding token at once (denylist), not only introspect
    from flask_licensechain.core.errors import InvalidToken

    with pytest.raises(InvalidToken) as refused:
        issuer.state.verifier.verify(token)
    assert refused.value.reason == "token_revoked"
    assert issuer.introspect(token) == {"active": False, "reason": "license_revoked"}
    assert issuer.verify(key=lic.key).get_json()["reason"] == "license_revoked"
    again = _patch(issuer, lic.id, "revoke")  # idempotent
    assert again.status_code == 200
    assert again.get_json()["status"] == "REVOKED"
    for action in ("activate", "suspend"):
        error_body(_patch(issuer, lic.id, action), 409, "conflict")
    error_body(_patch(issuer, lic.id, "extend", {"expiresAt": None}), 409, "conflict")
    assert issuer.store.licenses.get(lic.id).status == "REVOKED"


def test_suspend_then_activate(denylisted_issuer: Issuer) -> None:
    issuer = denylisted_issuer
    lic = issuer.new_license()
    old = issuer.token_for(lic.key)
    suspended = _patch(issuer, lic.id, "suspend")
    assert suspended.get_json()["status"] == "SUSPENDED"
    assert issuer.introspect(old) == {"active": False, "reason": "license_suspended"}
    assert issuer.verify(key=lic.key).get_json()["reason"] == "license_suspended"
    activated = _patch(issuer, lic.id, "activate")
    assert activated.status_code == 200
    assert activated.get_json()["status"] == "ACTIVE"
    new = issuer.token_for(lic.key)
    assert issuer.introspect(new)["active"] is True
    issuer.state.verifier.verify(new)  # the denylist entry is gone
    assert issuer.introspect(old)["active"] is True  # suspension lifted for old tokens too


def test_suspend_entry_lives_for_the_longest_ttl(tmp_path: Path, redis_url: str) -> None:
    import redis

    from flask_licensechain.core.denylist import REVOCATION_HORIZON
    from flask_licensechain.core.denylist.redis import RedisKeys

    block = RedisKeys().key("block", "")

    made = make_issuer(tmp_path, denylist_url=redis_url)
    try:
        lic = made.new_license()
        _patch(made, lic.id, "suspend")
        client = redis.Redis.from_url(redis_url)
        ttl = client.pttl(block + lic.id) / 1000
        # at least the longest TTL (a day, written out) plus the leeway
        assert 86400 + 30 <= ttl <= REVOCATION_HORIZON
        _patch(made, lic.id, "activate")
        assert client.exists(block + lic.id) == 0
        client.close()
    finally:
        close_issuer(made)


def test_revocation_with_redis_down_is_kept_in_the_store_and_enforced(tmp_path: Path) -> None:
    # The store is the record: Redis being down loses speed, never the revocation.
    from conftest import free_port

    made = make_issuer(tmp_path, denylist_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        lic = made.new_license()
        token = made.token_for(lic.key)
        assert _patch(made, lic.id, "suspend").status_code == 200
        with pytest.raises(InvalidToken):
            made.state.verifier.verify(token)
        assert made.introspect(token)["active"] is False
        assert made.store.revocations.snapshot(time.time())[1]  # recorded
        assert _patch(made, lic.id, "activate").status_code == 200
        made.state.verifier.verify(token)  # lifted, Redis still down
    finally:
        close_issuer(made)


def test_extend(issuer: Issuer) -> None:
    lic = issuer.new_license(expires_at=datetime.now(UTC) - timedelta(days=1))
    assert issuer.verify(key=lic.key).get_json()["reason"] == "license_expired"
    response = _patch(issuer, lic.id, "extend", {"expiresAt": "2035-01-01T00:00:00Z"})
    assert response.status_code == 200
    assert response.get_json()["expiresAt"] == "2035-01-01T00:00:00.000Z"
    assert response.get_json()["status"] == "ACTIVE"
    assert issuer.verify(key=lic.key).get_json()["valid"] is True
    perpetual = _patch(issuer, lic.id, "extend", {"expires_at": None}).get_json()
    assert perpetual["expiresAt"] is None
    for bad in ({}, {"expiresAt": "soon"}, {"expiresAt": 1.5e20}, {"until": "2035-01-01"}):
        error_body(_patch(issuer, lic.id, "extend", bad), 400, "invalid_request")
    error_body(_patch(issuer, "lic_missing", "extend", {"expiresAt": None}), 404, "not_found")


def test_status_changes_on_missing_license_are_404(sqlite_issuer: Issuer) -> None:
    for action in ("revoke", "suspend", "activate"):
        error_body(_patch(sqlite_issuer, "lic_missing", action), 404, "not_found")


def test_release_device_errors(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    auth = sqlite_issuer.auth()
    error_body(
        sqlite_issuer.client.delete(f"/v1/licenses/{lic.id}/devices/m1", headers=auth),
        404,
        "not_found",
    )
    error_body(
        sqlite_issuer.client.delete("/v1/licenses/lic_x/devices/m1", headers=auth), 404, "not_found"
    )


# -- revoke-token ----------------------------------------------------------------------------


def test_revoke_token_by_token_and_idempotent(denylisted_issuer: Issuer) -> None:
    issuer = denylisted_issuer
    lic = issuer.new_license()
    token = issuer.token_for(lic.key)
    jti = decode_unverified(token)[1]["jti"]
    for body in ({"license_token": token}, {"token": token}, {"jti": jti}):
        response = issuer.post("/v1/licenses/revoke-token", body, headers=issuer.auth())
        assert response.status_code == 200
        assert response.get_json() == {"revoked": True, "jti": jti}
    assert issuer.introspect(token) == {"active": False, "reason": "token_revoked"}


def test_revoke_token_ttl_is_the_tokens_remaining_life(tmp_path: Path, redis_url: str) -> None:
    import redis

    from flask_licensechain.core.denylist.redis import RedisKeys

    jti_key = RedisKeys().key("jti", "")

    made = make_issuer(tmp_path, denylist_url=redis_url)
    try:
        lic = made.new_license(made.new_app(tier="free").id)
        token = made.token_for(lic.key)
        claims = decode_unverified(token)[1]
        made.post("/v1/licenses/revoke-token", {"license_token": token}, headers=made.auth())
        client = redis.Redis.from_url(redis_url)
        ttl = client.pttl(jti_key + claims["jti"]) / 1000
        assert claims["exp"] + 30 - time.time() - 5 <= ttl <= 900 + 30
        made.post(
            "/v1/licenses/revoke-token", {"jti": "bare-jti-" + claims["jti"]}, headers=made.auth()
        )
        bare = client.pttl(jti_key + "bare-jti-" + claims["jti"]) / 1000
        assert 86400 <= bare <= 86400 + 30  # the longest TTL (a day) plus the leeway
        client.close()
    finally:
        close_issuer(made)


@pytest.mark.parametrize(
    "body",
    [{}, {"jti": ""}, {"jti": 5}, {"token": "not-a-jwt"}, {"license_token": 3}, {"jti": "x" * 300}],
)
def test_revoke_token_rejects_bad_bodies(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    response = sqlite_issuer.post("/v1/licenses/revoke-token", body, headers=sqlite_issuer.auth())
    error_body(response, 400, "invalid_request")


def test_revoke_token_with_mismatched_jti(sqlite_issuer: Issuer) -> None:
    token = sqlite_issuer.token_for(sqlite_issuer.new_license().key)
    response = sqlite_issuer.post(
        "/v1/licenses/revoke-token",
        {"token": token, "jti": "other"},
        headers=sqlite_issuer.auth(),
    )
    error_body(response, 400, "invalid_request")
    assert sqlite_issuer.introspect(token)["active"] is True


# -- signing keys and API keys ---------------------------------------------------------------


def test_rotate_endpoint(issuer: Issuer) -> None:
    old_kid = issuer.state.keyring.active_key().kid  # type: ignore[union-attr]
    response = issuer.post("/v1/signing-keys/rotate", headers=issuer.auth())
    assert response.status_code == 200
    body = response.get_json()
    assert body["previousKid"] == old_kid
    assert body["kid"] != old_kid
    assert body["kid"] == issuer.state.keyring.active_key().kid  # type: ignore[union-attr]
    kids = [k["kid"] for k in issuer.client.get("/v1/licenses/jwks").get_json()["keys"]]
    assert kids == [body["kid"], old_kid]


def test_create_api_key(sqlite_issuer: Issuer) -> None:
    writer = sqlite_issuer.api_key("api-keys:write", "apps:read", "licenses:read")
    response = sqlite_issuer.post(
        "/v1/api-keys",
        {"name": "ci", "scopes": ["apps:read"]},
        headers=sqlite_issuer.auth(writer),
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert re.fullmatch(r"lc_live_[A-Za-z0-9_-]{43}", body["key"])
    assert body["scopes"] == ["apps:read"]
    assert body["name"] == "ci"
    assert body["key"].startswith(body["prefix"])
    new = body["key"]
    assert sqlite_issuer.client.get("/v1/apps", headers=sqlite_issuer.auth(new)).status_code == 200
    error_body(
        sqlite_issuer.client.get("/v1/licenses", headers=sqlite_issuer.auth(new)),
        403,
        "insufficient_scope",
    )
    test_env = sqlite_issuer.post(
        "/v1/api-keys",
        {"name": "t", "scopes": ["apps:read"], "environment": "test"},
        headers=sqlite_issuer.auth(writer),
    ).get_json()
    assert test_env["key"].startswith("lc_test_")


@pytest.mark.parametrize("scopes", [["*"], ["apps:write"], ["apps:read", "keys:rotate"]])
def test_api_key_cannot_grant_more_than_it_holds(sqlite_issuer: Issuer, scopes: list[str]) -> None:
    writer = sqlite_issuer.api_key("api-keys:write", "apps:read")
    before = sqlite_issuer.snapshot()
    response = sqlite_issuer.post(
        "/v1/api-keys", {"name": "x", "scopes": scopes}, headers=sqlite_issuer.auth(writer)
    )
    error_body(response, 403, "insufficient_scope")
    assert sqlite_issuer.snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"scopes": ["apps:read"]},
        {"name": "x", "scopes": "apps:read"},
        {"name": "x", "scopes": ["apps:read"], "environment": "prod"},
    ],
)
def test_create_api_key_rejects_bad_bodies(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    before = sqlite_issuer.snapshot()
    response = sqlite_issuer.post("/v1/api-keys", body, headers=sqlite_issuer.auth())
    error_body(response, 400, "invalid_request")
    assert sqlite_issuer.snapshot() == before


def test_admin_changes_are_audited(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    _patch(sqlite_issuer, lic.id, "suspend")
    events = sqlite_issuer.store.audit.list()
    assert events[0].action == "license.suspend"
    assert events[0].target == lic.id
    assert events[0].actor == sqlite_issuer.store.api_keys.authenticate(sqlite_issuer.admin_key).id
