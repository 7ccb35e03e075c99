"""LicenseChain's official clients, request by request: each test sends a request exactly as
the Python SDK (``licensechain-sdk``) or the Node SDK (``@licensechain/nodejs-sdk``) sends
it, and checks the answer those clients expect. The SDKs themselves run against a real
server in tests/test_sdk_real.py.

Also here: the admin endpoints those clients need (statistics, analytics, app management, an
app's own API key), license routes by id or key, device release for every hardware id that
verify accepts, the root ``/health``, JSON for every unknown path, and the CORS allow-list of
the public endpoints.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from contract_fields import APP_FIELDS, LICENSE_FIELDS
from issuer_support import Issuer, close_issuer, error_body, make_issuer
from webhooks_support import stub_resolver

from flask_licensechain.core.errors import InvalidToken
from flask_licensechain.webhooks import ssrf

pytest_plugins = ["issuer_fixtures"]

#: what the SDKs send with every request (the Python SDK's requests session and httpx client)
SDK_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
STATS_FIELDS = {"total", "active", "expired", "revoked", "suspended"}


def sdk(issuer: Issuer, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    """A request as the SDKs send it: the JSON content type always, a body only when given."""
    headers = {**SDK_HEADERS, **issuer.auth(), **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return issuer.client.open(path, method=method, headers=headers, **kwargs)


def refused(issuer: Issuer, token: str) -> str | None:
    """Why the gate's verifier refuses ``token`` (``None``: it passes)."""
    try:
        issuer.state.verifier.verify(token)
    except InvalidToken as error:
        return error.reason
    return None


# -- 1. create a license with the app id repeated in the body --------------------------------


def test_create_license_as_the_python_sdk_sends_it(issuer: Issuer) -> None:
    app = issuer.new_app()
    # LicenseChainClient.create_license: every key present, None for the ones not given.
    body = {
        "appId": app.id,
        "plan": "FREE",
        "issuedEmail": "a@b.c",
        "issuedTo": None,
        "expiresAt": None,
        "metadata": {"order": "A-1"},
    }
    response = sdk(issuer, "POST", f"/v1/apps/{app.id}/licenses", body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert set(created) == LICENSE_FIELDS
    assert created["appId"] == app.id
    assert (created["plan"], created["issuedEmail"], created["metadata"]) == (
        "FREE",
        "a@b.c",
        {"order": "A-1"},
    )
    assert created["expiresAt"] is None and created["status"] == "ACTIVE"


@pytest.mark.parametrize("name", ["appId", "app_id"])
def test_create_license_app_id_in_body_must_match_the_path(
    sqlite_issuer: Issuer, name: str
) -> None:
    app = sqlite_issuer.new_app()
    other = sqlite_issuer.new_app(name="Other")
    ok = sdk(sqlite_issuer, "POST", f"/v1/apps/{app.id}/licenses", {name: app.id, "plan": "PRO"})
    assert ok.status_code == 201 and ok.get_json()["appId"] == app.id
    before = sqlite_issuer.snapshot()
    for wrong in (other.id, "app_missing", "", 7, None if name == "appId" else []):
        response = sdk(sqlite_issuer, "POST", f"/v1/apps/{app.id}/licenses", {name: wrong})
        if wrong is None:  # null is "not given"
            assert response.status_code == 201
            before = sqlite_issuer.snapshot()
            continue
        body = error_body(response, 400, "invalid_request")
        assert name in body["message"]
    assert sqlite_issuer.snapshot() == before
    # both names given and disagreeing
    both = {"appId": app.id, "app_id": other.id}
    error_body(
        sdk(sqlite_issuer, "POST", f"/v1/apps/{app.id}/licenses", both), 400, "invalid_request"
    )


def test_create_license_as_the_node_sdk_sends_it(sqlite_issuer: Issuer) -> None:
    app = sqlite_issuer.new_app()
    # LicenseService.create: undefined members are dropped by JSON.stringify; "" stays.
    for body in (
        {"appId": app.id, "plan": "FREE", "issuedEmail": "n@b.c"},
        {"appId": app.id, "plan": "PRO", "issuedEmail": "n@b.c", "expiresAt": ""},
        {"appId": app.id, "plan": "PRO", "expires_at": ""},
    ):
        response = sdk(sqlite_issuer, "POST", f"/v1/apps/{app.id}/licenses", body)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["expiresAt"] is None
    dated = sdk(
        sqlite_issuer,
        "POST",
        f"/v1/apps/{app.id}/licenses",
        {"appId": app.id, "expiresAt": "2031-01-01T00:00:00Z"},
    )
    assert dated.get_json()["expiresAt"] == "2031-01-01T00:00:00.000Z"
    # "" means "not given" for the expiry only; elsewhere an empty string is still checked
    error_body(
        sdk(sqlite_issuer, "POST", f"/v1/apps/{app.id}/licenses", {"expiresAt": " "}),
        400,
        "invalid_request",
    )


# -- 2. revoke by DELETE ----------------------------------------------------------------------


def test_delete_revokes_keeps_the_record_and_refuses_tokens_at_once(
    denylisted_issuer: Issuer,
) -> None:
    issuer = denylisted_issuer
    lic = issuer.new_license()
    token = issuer.token_for(lic.key)
    response = sdk(issuer, "DELETE", f"/v1/licenses/{lic.id}")  # the SDKs send no body
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == LICENSE_FIELDS
    assert body["status"] == "REVOKED"
    assert refused(issuer, token) == "token_revoked"
    assert issuer.introspect(token) == {"active": False, "reason": "license_revoked"}
    assert issuer.verify(key=lic.key).get_json()["reason"] == "license_revoked"
    kept = sdk(issuer, "GET", f"/v1/licenses/{lic.id}")
    assert kept.status_code == 200 and kept.get_json()["status"] == "REVOKED"
    again = sdk(issuer, "DELETE", f"/v1/licenses/{lic.key}", {"reason": "refund"})
    assert again.status_code == 200 and again.get_json()["status"] == "REVOKED"
    actions = [e.action for e in issuer.store.audit.list() if e.target == lic.id]
    assert actions.count("license.revoke") == 1


def test_delete_is_the_revoke_path(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    for bad in ({"reason": 5}, {"why": "x"}):
        error_body(
            sdk(sqlite_issuer, "DELETE", f"/v1/licenses/{lic.id}", bad), 400, "invalid_request"
        )
    assert sqlite_issuer.store.licenses.get(lic.id).status == "ACTIVE"
    error_body(sdk(sqlite_issuer, "DELETE", "/v1/licenses/lic_missing"), 404, "not_found")
    error_body(
        sdk(sqlite_issuer, "DELETE", "/v1/licenses/LC-AAAAAA-AAAAAA-AAAAAA"), 404, "not_found"
    )


# -- 3. status through an update, and PATCH …/status ------------------------------------------


@pytest.mark.parametrize("route", ["update", "put", "status"])
def test_status_change_through_update_follows_the_status_path(
    denylisted_issuer: Issuer, route: str
) -> None:
    issuer = denylisted_issuer
    lic = issuer.new_license()

    def set_status(value: Any, **extra: Any) -> Any:
        if route == "status":
            return sdk(issuer, "PATCH", f"/v1/licenses/{lic.id}/status", {"status": value, **extra})
        method = "PUT" if route == "put" else "PATCH"
        return sdk(issuer, method, f"/v1/licenses/{lic.id}", {"status": value, **extra})

    token = issuer.token_for(lic.key)
    suspended = set_status("suspended")
    assert suspended.status_code == 200, suspended.get_json()
    assert suspended.get_json()["status"] == "SUSPENDED"
    assert refused(issuer, token) == "token_revoked"  # denylisted like /suspend
    assert issuer.verify(key=lic.key).get_json()["reason"] == "license_suspended"
    active = set_status("Active")
    assert active.get_json()["status"] == "ACTIVE"
    assert refused(issuer, token) is None  # lifted like /activate
    revoked = set_status("REVOKED")
    assert revoked.get_json()["status"] == "REVOKED"
    assert refused(issuer, token) == "token_revoked"
    for back in ("ACTIVE", "suspended"):  # the 409 rules of /activate and /suspend
        error_body(set_status(back), 409, "conflict")
    assert set_status("revoked").status_code == 200  # revoking twice is fine, as /revoke
    assert issuer.store.licenses.get(lic.id).status == "REVOKED"


def test_status_in_an_update_with_other_fields(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    response = sdk(
        sqlite_issuer,
        "PATCH",
        f"/v1/licenses/{lic.id}",
        {"status": "SUSPENDED", "expires_at": "2032-01-01T00:00:00Z", "metadata": {"n": 1}},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["status"], body["expiresAt"], body["metadata"]) == (
        "SUSPENDED",
        "2032-01-01T00:00:00.000Z",
        {"n": 1},
    )
    actions = [e.action for e in sqlite_issuer.store.audit.list() if e.target == lic.id]
    assert "license.suspend" in actions and "license.update" in actions


@pytest.mark.parametrize(
    "body",
    [
        {"status": "EXPIRED"},  # derived from expiresAt, never set
        {"status": "deleted"},
        {"status": ""},
        {"status": 1},
        {"status": None},
        {"status": "SUSPENDED", "plan": 5},  # nothing changes when any field is bad
        {"status": "SUSPENDED", "unknown": 1},
    ],
)
def test_bad_status_updates_change_nothing(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    lic = sqlite_issuer.new_license()
    token = sqlite_issuer.token_for(lic.key)
    before = sqlite_issuer.snapshot()
    for method, path in (
        ("PATCH", f"/v1/licenses/{lic.id}"),
        ("PUT", f"/v1/licenses/{lic.id}"),
        ("PATCH", f"/v1/licenses/{lic.id}/status"),
    ):
        error_body(sdk(sqlite_issuer, method, path, body), 400, "invalid_request")
    assert sqlite_issuer.snapshot() == before
    assert refused(sqlite_issuer, token) is None


def test_status_route_needs_a_status(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    for body in (None, {}, {"plan": "x"}):
        error_body(
            sdk(sqlite_issuer, "PATCH", f"/v1/licenses/{lic.id}/status", body),
            400,
            "invalid_request",
        )
    error_body(
        sdk(sqlite_issuer, "PATCH", "/v1/licenses/lic_missing/status", {"status": "REVOKED"}),
        404,
        "not_found",
    )


# -- 4. update by PUT -------------------------------------------------------------------------


def test_put_is_patch(issuer: Issuer) -> None:
    lic = issuer.new_license()
    response = sdk(issuer, "PUT", f"/v1/licenses/{lic.id}", {"plan": "business"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["plan"] == "business"
    # Node's update(): snake_case members
    snake = sdk(
        issuer, "PUT", f"/v1/licenses/{lic.key}", {"expires_at": "2033-03-03T00:00:00Z"}
    ).get_json()
    assert snake["expiresAt"] == "2033-03-03T00:00:00.000Z" and snake["plan"] == "business"
    error_body(sdk(issuer, "PUT", f"/v1/licenses/{lic.id}", {"nope": 1}), 400, "invalid_request")
    error_body(sdk(issuer, "PUT", "/v1/licenses/lic_missing", {"plan": "x"}), 404, "not_found")


# -- 5. statistics and analytics ---------------------------------------------------------------


def test_license_stats(issuer: Issuer) -> None:
    app = issuer.new_app()
    other = issuer.new_app(name="Other")
    issuer.new_license(app.id)
    issuer.new_license(app.id, expires_at=datetime.now(UTC) - timedelta(days=1))
    issuer.store.licenses.set_status(issuer.new_license(app.id).id, "REVOKED")
    issuer.store.licenses.set_status(issuer.new_license(app.id).id, "SUSPENDED")
    issuer.new_license(other.id)
    response = sdk(issuer, "GET", "/v1/licenses/stats")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "total": 5,
        "active": 2,
        "expired": 1,
        "revoked": 1,
        "suspended": 1,
    }
    for name in ("app_id", "appId"):
        one = sdk(issuer, "GET", f"/v1/licenses/stats?{name}={app.id}").get_json()
        assert one == {"total": 4, "active": 1, "expired": 1, "revoked": 1, "suspended": 1}
    error_body(sdk(issuer, "GET", "/v1/licenses/stats?app_id=app_missing"), 404, "not_found")


def _verify_several(issuer: Issuer, app_id: str) -> tuple[str, str]:
    good = issuer.new_license(app_id, max_devices=1)
    gone = issuer.new_license(app_id, expires_at=datetime.now(UTC) - timedelta(days=1))
    for body in (
        {"key": good.key},
        {"key": good.key, "hwuid": "m1"},
        {"key": good.key, "hwuid": "m2"},  # hardware_id_mismatch
        {"key": gone.key},  # license_expired
        {"key": "LC-ZZZZZZ-ZZZZZZ-ZZZZZZ"},  # license_not_found
    ):
        assert issuer.verify(**body).status_code == 200
    assert issuer.client.post(
        "/v1/licenses/validate-hardware", json={"key": good.key, "hwuid": "m1"}
    ).get_json()["valid"]
    return good.id, gone.id


def test_analytics_counts_verifications_by_outcome_per_day(issuer: Issuer) -> None:
    app = issuer.new_app()
    other = issuer.new_app(name="Other")
    good, gone = _verify_several(issuer, app.id)
    issuer.verify(key=issuer.new_license(other.id).key)
    today = datetime.now(UTC).date().isoformat()

    usage = sdk(issuer, "GET", f"/v1/analytics/usage?period=30d&app_id={app.id}")
    assert usage.status_code == 200, usage.get_json()
    body = usage.get_json()
    assert body["period"] == "30d" and body["appId"] == app.id
    assert len(body["days"]) == 30
    assert body["days"][-1]["date"] == today
    assert all(day["total"] == 0 for day in body["days"][:-1])
    assert body["days"][-1]["outcomes"] == {
        "valid": 3,
        "hardware_id_mismatch": 1,
        "license_expired": 1,
    }
    assert body["totals"] == {"total": 5, "valid": 3, "invalid": 2}

    everything = sdk(issuer, "GET", "/v1/analytics/stats?period=7d").get_json()
    assert len(everything["days"]) == 7
    assert everything["days"][-1]["outcomes"] == {
        "valid": 4,
        "hardware_id_mismatch": 1,
        "license_expired": 1,
        "license_not_found": 1,
    }
    assert everything["licenses"] == {
        "total": 3,
        "active": 2,
        "expired": 1,
        "revoked": 0,
        "suspended": 0,
    }
    assert everything["apps"] == 2

    one = sdk(issuer, "GET", f"/v1/licenses/{good}/analytics").get_json()
    assert one["licenseId"] == good and one["period"] == "30d"
    assert one["days"][-1]["outcomes"] == {"valid": 3, "hardware_id_mismatch": 1}
    by_key = issuer.store.licenses.get(gone).key
    expired = sdk(issuer, "GET", f"/v1/licenses/{by_key}/analytics?period=1y").get_json()
    assert len(expired["days"]) == 365
    assert expired["totals"] == {"total": 1, "valid": 0, "invalid": 1}


@pytest.mark.parametrize(
    "query", ["period=2d", "period=30", "period=", "period=30d&period=7d", "period=%00"]
)
def test_analytics_rejects_bad_periods(sqlite_issuer: Issuer, query: str) -> None:
    lic = sqlite_issuer.new_license()
    for path in ("/v1/analytics/stats", "/v1/analytics/usage", f"/v1/licenses/{lic.id}/analytics"):
        if query == "period=":
            assert sdk(sqlite_issuer, "GET", f"{path}?{query}").status_code == 200  # default
            continue
        error_body(sdk(sqlite_issuer, "GET", f"{path}?{query}"), 400, "invalid_request")


def test_analytics_of_missing_objects_is_404(sqlite_issuer: Issuer) -> None:
    error_body(sdk(sqlite_issuer, "GET", "/v1/licenses/lic_missing/analytics"), 404, "not_found")
    error_body(
        sdk(sqlite_issuer, "GET", "/v1/analytics/usage?app_id=app_missing"), 404, "not_found"
    )


def test_stats_route_is_not_a_license_lookup(sqlite_issuer: Issuer) -> None:
    """``/licenses/stats`` is matched before ``/licenses/<id or key>``, with its own scope."""
    reader = sqlite_issuer.api_key("licenses:read")
    assert (
        sqlite_issuer.client.get(
            "/v1/licenses/stats", headers=sqlite_issuer.auth(reader)
        ).status_code
        == 200
    )
    nobody = sqlite_issuer.api_key("apps:read")
    error_body(
        sqlite_issuer.client.get("/v1/licenses/stats", headers=sqlite_issuer.auth(nobody)),
        403,
        "insufficient_scope",
    )
    for method in ("PATCH", "DELETE", "PUT"):
        assert sdk(sqlite_issuer, method, "/v1/licenses/stats", {}).status_code in (404, 405)


# -- 6. create an app with the SDK's fields ----------------------------------------------------


def test_create_app_as_the_python_sdk_sends_it(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the webhook URL's host must resolve to a public address (webhooks/ssrf.py): stubbed
    monkeypatch.setattr(ssrf, "resolve", stub_resolver({"hooks.example": ["93.184.215.14"]}))
    body = {"name": "Shop", "description": "d", "webhook_url": None, "allowed_origins": []}
    response = sdk(issuer, "POST", "/v1/apps", body)
    assert response.status_code == 201, response.get_json()
    app = response.get_json()
    assert set(app) == APP_FIELDS
    assert app["webhookUrl"] is None and app["allowedOrigins"] == []
    full = sdk(
        issuer,
        "POST",
        "/v1/apps",
        {
            "name": "Shop 2",
            "webhook_url": "https://hooks.example/lc",
            "allowed_origins": ["https://Shop.example", "http://localhost:3000"],
        },
    ).get_json()
    assert full["webhookUrl"] == "https://hooks.example/lc"
    assert full["allowedOrigins"] == ["https://shop.example", "http://localhost:3000"]
    stored = issuer.store.apps.get(full["id"])
    assert stored.webhook_url == "https://hooks.example/lc"
    camel = sdk(
        issuer, "POST", "/v1/apps", {"name": "C", "webhookUrl": None, "allowedOrigins": None}
    )
    assert camel.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "webhook_url": "ftp://x"},
        {"name": "x", "webhook_url": 5},
        {"name": "x", "allowed_origins": "https://a.example"},
        {"name": "x", "allowed_origins": ["*"]},
        {"name": "x", "allowed_origins": ["https://a.example/path"]},
        {"name": "x", "allowed_origins": [None]},
    ],
)
def test_create_app_rejects_bad_sdk_fields(sqlite_issuer: Issuer, body: dict[str, Any]) -> None:
    before = sqlite_issuer.snapshot()
    error_body(sdk(sqlite_issuer, "POST", "/v1/apps", body), 400, "invalid_request")
    assert sqlite_issuer.snapshot() == before


def test_list_apps_pages_as_the_sdk_asks(sqlite_issuer: Issuer) -> None:
    for i in range(3):
        sqlite_issuer.new_app(name=f"App {i}")
    body = sdk(sqlite_issuer, "GET", "/v1/apps?page=2&limit=2").get_json()
    assert (body["total"], body["page"], body["limit"]) == (3, 2, 2)
    assert [a["name"] for a in body["apps"]] == ["App 2"]
    assert len(sdk(sqlite_issuer, "GET", "/v1/apps").get_json()["apps"]) == 3
    error_body(sdk(sqlite_issuer, "GET", "/v1/apps?page=0"), 400, "invalid_request")


# -- 7. manage apps ----------------------------------------------------------------------------


def test_update_app(issuer: Issuer) -> None:
    app = issuer.new_app(tier="free")
    response = sdk(
        issuer,
        "PATCH",
        f"/v1/apps/{app.id}",
        {"name": "Renamed", "tier": "business", "allowed_origins": ["https://a.example"]},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == APP_FIELDS
    assert (body["name"], body["tier"], body["verificationType"]) == (
        "Renamed",
        "business",
        "custom",
    )
    assert body["allowedOrigins"] == ["https://a.example"]
    assert body["slug"] == app.slug
    # the tier decides the next tokens' lifetime class
    lic = issuer.new_license(app.id)
    assert issuer.verify(key=lic.key).get_json()["verificationType"] == "custom"
    for bad in ({"tier": "gold"}, {"name": ""}, {"slug": "x"}, {"webhookUrl": "nope"}):
        error_body(sdk(issuer, "PATCH", f"/v1/apps/{app.id}", bad), 400, "invalid_request")
    error_body(sdk(issuer, "PATCH", "/v1/apps/app_missing", {"name": "x"}), 404, "not_found")


def test_delete_app_only_once_its_licenses_are_revoked(issuer: Issuer) -> None:
    app = issuer.new_app()
    lic = issuer.new_license(app.id)
    response = sdk(issuer, "DELETE", f"/v1/apps/{app.id}")
    error_body(response, 409, "conflict")
    assert issuer.store.apps.get(app.id) is not None
    assert sdk(issuer, "DELETE", f"/v1/licenses/{lic.id}").status_code == 200
    deleted = sdk(issuer, "DELETE", f"/v1/apps/{app.id}")
    assert deleted.status_code == 200, deleted.get_json()
    assert deleted.get_json()["id"] == app.id and deleted.get_json()["deleted"] is True
    error_body(sdk(issuer, "GET", f"/v1/apps/{app.id}"), 404, "not_found")
    error_body(sdk(issuer, "DELETE", f"/v1/apps/{app.id}"), 404, "not_found")
    assert "app.delete" in [e.action for e in issuer.store.audit.list()]


def test_regenerate_key(issuer: Issuer) -> None:
    app = issuer.new_app()
    other = issuer.new_app(name="Other")
    mine = issuer.new_license(app.id)
    theirs = issuer.new_license(other.id)
    first = sdk(issuer, "POST", f"/v1/apps/{app.id}/regenerate-key")  # no body, as the SDK
    assert first.status_code == 201, first.get_json()
    assert first.headers["Cache-Control"] == "no-store"
    issued = first.get_json()
    assert issued["appId"] == app.id
    assert issued["key"].startswith("lc_live_") and issued["apiKey"] == issued["key"]
    assert issued["revokedKeyIds"] == []
    app_key = issued["key"]
    own = issuer.client.get(f"/v1/licenses/{mine.id}", headers=issuer.auth(app_key))
    assert own.status_code == 200
    # limited to its app: other apps' objects do not exist for it
    error_body(
        issuer.client.get(f"/v1/licenses/{theirs.id}", headers=issuer.auth(app_key)),
        404,
        "not_found",
    )
    second = sdk(issuer, "POST", f"/v1/apps/{app.id}/regenerate-key").get_json()
    assert second["revokedKeyIds"] == [issued["id"]]
    error_body(
        issuer.client.get(f"/v1/licenses/{mine.id}", headers=issuer.auth(app_key)),
        401,
        "unauthorized",
    )
    assert (
        issuer.client.get(f"/v1/licenses/{mine.id}", headers=issuer.auth(second["key"])).status_code
        == 200
    )
    error_body(sdk(issuer, "POST", "/v1/apps/app_missing/regenerate-key"), 404, "not_found")
    # only a key that may write keys can mint one
    writer = issuer.api_key("apps:write", "licenses:write")
    error_body(
        issuer.client.post(f"/v1/apps/{app.id}/regenerate-key", headers=issuer.auth(writer)),
        403,
        "insufficient_scope",
    )
    # the secret never shows again
    listed = sdk(issuer, "GET", f"/v1/apps/{app.id}").get_data(as_text=True)
    assert second["key"] not in listed


# -- app-limited keys see one app ---------------------------------------------------------------


def test_an_app_limited_key_sees_only_its_app(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    app = issuer.new_app()
    other = issuer.new_app(name="Other")
    mine = issuer.new_license(app.id)
    theirs = issuer.new_license(other.id)
    key = sdk(issuer, "POST", f"/v1/apps/{app.id}/regenerate-key").get_json()["key"]
    auth = {**SDK_HEADERS, **issuer.auth(key)}

    def call(method: str, path: str, body: Any = None) -> Any:
        return issuer.client.open(path, method=method, headers=auth, json=body)

    listed = call("GET", "/v1/apps").get_json()
    assert [a["id"] for a in listed["apps"]] == [app.id] and listed["total"] == 1
    licenses = call("GET", "/v1/licenses").get_json()
    assert [lic["id"] for lic in licenses["licenses"]] == [mine.id]
    assert call("GET", "/v1/licenses/stats").get_json()["total"] == 1
    assert call("GET", f"/v1/apps/{app.id}").status_code == 200
    assert call("PATCH", f"/v1/licenses/{mine.key}", {"plan": "x"}).status_code == 200
    for method, path, body in [
        ("GET", f"/v1/apps/{other.id}", None),
        ("GET", f"/v1/apps/{other.id}/licenses", None),
        ("POST", f"/v1/apps/{other.id}/licenses", {}),
        ("GET", f"/v1/licenses?app_id={other.id}", None),
        ("GET", f"/v1/licenses/stats?app_id={other.id}", None),
        ("GET", f"/v1/analytics/usage?app_id={other.id}", None),
        ("GET", f"/v1/licenses/{theirs.id}", None),
        ("GET", f"/v1/licenses/{theirs.key}", None),
        ("PATCH", f"/v1/licenses/{theirs.id}", {"plan": "x"}),
        ("PUT", f"/v1/licenses/{theirs.id}", {"plan": "x"}),
        ("DELETE", f"/v1/licenses/{theirs.id}", None),
        ("PATCH", f"/v1/licenses/{theirs.id}/revoke", {}),
        ("PATCH", f"/v1/licenses/{theirs.id}/suspend", {}),
        ("PATCH", f"/v1/licenses/{theirs.id}/activate", {}),
        ("PATCH", f"/v1/licenses/{theirs.id}/extend", {"expiresAt": None}),
        ("PATCH", f"/v1/licenses/{theirs.id}/status", {"status": "REVOKED"}),
        ("GET", f"/v1/licenses/{theirs.id}/analytics", None),
        ("DELETE", f"/v1/licenses/{theirs.id}/devices/m1", None),
    ]:
        response = call(method, path, body)
        assert response.status_code in (403, 404), (method, path, response.status_code)
        if response.status_code == 404:
            error_body(response, 404, "not_found")
    assert issuer.store.licenses.get(theirs.id).status == "ACTIVE"
    assert issuer.store.licenses.get(theirs.id).plan is None


# -- 8. license id or key, everywhere; devices with any hardware id ----------------------------


def test_every_license_route_takes_the_id_or_the_key(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    lic = issuer.new_license(max_devices=2)
    issuer.verify(key=lic.key, hwuid="m1")
    for ref in (lic.key, lic.key.lower(), lic.id):
        assert sdk(issuer, "GET", f"/v1/licenses/{ref}").get_json()["id"] == lic.id
        assert sdk(issuer, "PATCH", f"/v1/licenses/{ref}", {"plan": ref}).get_json()["plan"] == ref
        assert sdk(issuer, "PUT", f"/v1/licenses/{ref}", {"plan": "p"}).status_code == 200
        assert sdk(issuer, "PATCH", f"/v1/licenses/{ref}/suspend").get_json()["status"] == (
            "SUSPENDED"
        )
        assert sdk(issuer, "PATCH", f"/v1/licenses/{ref}/activate").get_json()["status"] == "ACTIVE"
        assert (
            sdk(issuer, "PATCH", f"/v1/licenses/{ref}/status", {"status": "ACTIVE"}).status_code
            == 200
        )
        assert (
            sdk(issuer, "PATCH", f"/v1/licenses/{ref}/extend", {"expiresAt": None}).status_code
            == 200
        )
        assert sdk(issuer, "GET", f"/v1/licenses/{ref}/analytics").status_code == 200
        issuer.verify(key=lic.key, hwuid="m1")
        released = sdk(issuer, "DELETE", f"/v1/licenses/{ref}/devices/m1")
        assert released.status_code == 200, released.get_json()
        assert released.get_json()["devices"] == []
    assert (
        sdk(issuer, "PATCH", f"/v1/licenses/{lic.key}/revoke", {"reason": None}).get_json()[
            "status"
        ]
        == "REVOKED"
    )


HWUIDS = [
    "dev/1",
    "a//b",
    "/leading",
    "trailing/",
    "//",
    "/",
    "%2F",
    "100%",
    "a?b#c",
    "x y",
    " padded ",
    "ünï/cødé ✓",
    "..",
    ".",
    "a/../b",
    "tab\there",
    "line\nbreak",
    "\\windows\\path",
    "x" * 256,
]


@pytest.mark.parametrize("hwuid", HWUIDS)
def test_every_hwuid_verify_accepts_can_be_released(sqlite_issuer: Issuer, hwuid: str) -> None:
    issuer = sqlite_issuer
    lic = issuer.new_license(max_devices=3)
    issuer.verify(key=lic.key, hwuid="keep")
    bound = issuer.verify(key=lic.key, hwuid=hwuid).get_json()
    assert bound["valid"] is True and bound["hwBound"] is True
    # in the path, percent-encoded as every HTTP client encodes a path segment
    path = f"/v1/licenses/{lic.id}/devices/{quote(hwuid, safe='')}"
    response = sdk(issuer, "DELETE", path)
    assert response.status_code == 200, (hwuid, response.status_code, response.get_data())
    assert [d["hwuid"] for d in response.get_json()["devices"]] == ["keep"]
    error_body(sdk(issuer, "DELETE", path), 404, "not_found")
    # and by query parameter or body, where no URL rewriting can touch it
    issuer.verify(key=lic.key, hwuid=hwuid)
    query = sdk(issuer, "DELETE", f"/v1/licenses/{lic.id}/devices", query_string={"hwuid": hwuid})
    assert query.status_code == 200 and len(query.get_json()["devices"]) == 1
    issuer.verify(key=lic.key, hwuid=hwuid)
    body = sdk(issuer, "DELETE", f"/v1/licenses/{lic.id}/devices", {"hwuid": hwuid})
    assert body.status_code == 200 and len(body.get_json()["devices"]) == 1


def test_device_release_by_query_needs_a_hwuid(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    for kwargs in ({}, {"query_string": {"hwuid": ""}}):
        error_body(
            sdk(sqlite_issuer, "DELETE", f"/v1/licenses/{lic.id}/devices", **kwargs),
            400,
            "invalid_request",
        )


# -- 9. the validator helper's nested license --------------------------------------------------


def test_verify_answer_carries_the_nested_license(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license(plan="PRO", features=["export"])
    body = sqlite_issuer.verify(key=lic.key).get_json()
    assert body["license"] == {
        "id": lic.id,
        "key": lic.key,
        "status": "ACTIVE",
        "expires_at": None,
        "features": ["export"],
        "plan": "PRO",
    }
    assert body["expires_at"] is None
    # every flat field stays
    for name in ("valid", "status", "id", "appId", "plan", "features", "expiresAt", "email"):
        assert name in body
    dated = sqlite_issuer.new_license(expires_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))
    answer = sqlite_issuer.verify(key=dated.key).get_json()
    assert answer["expires_at"] == answer["expiresAt"] == "2031-05-06T07:08:09.000Z"
    assert answer["license"]["expires_at"] == "2031-05-06T07:08:09.000Z"
    invalid = sqlite_issuer.verify(key="LC-ZZZZZZ-ZZZZZZ-ZZZZZZ").get_json()
    assert "license" not in invalid and "expires_at" not in invalid


# -- 10. health without the prefix; JSON for every unknown path ---------------------------------


def test_health_at_the_root(sqlite_issuer: Issuer) -> None:
    root = sqlite_issuer.client.get("/health")
    prefixed = sqlite_issuer.client.get("/v1/health")
    assert root.status_code == prefixed.status_code == 200
    assert root.mimetype == "application/json"
    assert set(root.get_json()) == set(prefixed.get_json())
    assert root.get_json()["status"] == "ok"
    assert root.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "path",
    ["/", "/nope", "/v1", "/v1/", "/v1/nope", "/v2/licenses/verify", "/health/x", "/favicon.ico"],
)
def test_unknown_paths_answer_json(sqlite_issuer: Issuer, path: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = sqlite_issuer.client.open(path, method=method)
        body = error_body(response, 404, "not_found")
        assert "<" not in body["message"]


def test_wrong_methods_answer_json(sqlite_issuer: Issuer) -> None:
    response = sqlite_issuer.client.post("/health")
    error_body(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_a_host_apps_own_404_page_stays(tmp_path: Path) -> None:
    from flask import Flask

    from flask_licensechain import LicenseChain

    app = Flask("host", instance_path=str(tmp_path))
    app.testing = True
    app.register_error_handler(404, lambda _e: ("host page", 404))
    LicenseChain(app, ratelimit_enabled=False)
    response = app.test_client().get("/elsewhere")
    assert response.status_code == 404 and response.get_data(as_text=True) == "host page"
    assert app.test_client().get("/v1/nope").mimetype == "application/json"
    app.extensions["licensechain"].store.dispose()


def test_json_errors_can_be_turned_off(tmp_path: Path) -> None:
    made = make_issuer(tmp_path, json_errors=False)
    try:
        assert made.client.get("/elsewhere").mimetype == "text/html"
        assert made.client.get("/v1/elsewhere").mimetype == "application/json"
    finally:
        close_issuer(made)


def test_webhook_paths_belong_to_the_webhooks_endpoints(sqlite_issuer: Issuer) -> None:
    """Only ``api/webhooks.py`` answers for /v1/webhooks (no compatibility alias there)."""
    app = sqlite_issuer.app
    owners = {
        app.view_functions[rule.endpoint].__module__
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/webhooks")
    }
    assert owners == {"flask_licensechain.api.webhooks"}
    assert sdk(sqlite_issuer, "GET", "/v1/webhooks").mimetype == "application/json"


# -- CORS: the apps' allowed origins, on the public endpoints only -----------------------------

PUBLIC = [
    ("POST", "/v1/licenses/verify"),
    ("POST", "/v1/licenses/validate-hardware"),
    ("GET", "/v1/licenses/jwks"),
    ("POST", "/v1/licenses/introspect"),
    ("GET", "/v1/health"),
]


@pytest.fixture
def cors_issuer(sqlite_issuer: Issuer) -> Issuer:
    sqlite_issuer.store.apps.create("Browser app", allowed_origins=["https://shop.example"])
    return sqlite_issuer


@pytest.mark.parametrize(("method", "path"), PUBLIC)
def test_preflight_allows_only_listed_origins(cors_issuer: Issuer, method: str, path: str) -> None:
    allowed = cors_issuer.client.options(
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type, x-request-id",
        },
    )
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert method in allowed.headers["Access-Control-Allow-Methods"]
    assert "content-type" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    for origin in ("https://evil.example", "https://shop.example.evil.example", "null", "*"):
        denied = cors_issuer.client.options(
            path, headers={"Origin": origin, "Access-Control-Request-Method": method}
        )
        assert "Access-Control-Allow-Origin" not in denied.headers, origin
        assert "Origin" in denied.headers["Vary"]


@pytest.mark.parametrize(("method", "path"), PUBLIC)
def test_public_answers_carry_cors_headers_for_listed_origins(
    cors_issuer: Issuer, method: str, path: str
) -> None:
    body = {"key": "LC-AAAAAA-AAAAAA-AAAAAA", "hwuid": "h", "token": "x"}
    kwargs: dict[str, Any] = {"json": body} if method == "POST" else {}
    ok = cors_issuer.client.open(
        path, method=method, headers={"Origin": "https://SHOP.example"}, **kwargs
    )
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    assert "Origin" in ok.headers["Vary"]
    other = cors_issuer.client.open(
        path, method=method, headers={"Origin": "https://evil.example"}, **kwargs
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]


def test_admin_endpoints_never_answer_cors(cors_issuer: Issuer) -> None:
    for method, path in (("GET", "/v1/apps"), ("POST", "/v1/apps"), ("GET", "/v1/licenses")):
        preflight = cors_issuer.client.options(
            path,
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": method},
        )
        assert "Access-Control-Allow-Origin" not in preflight.headers
        real = cors_issuer.client.open(
            path,
            method=method,
            headers={**cors_issuer.auth(), "Origin": "https://shop.example"},
            json={"name": "x"} if method == "POST" else None,
        )
        assert "Access-Control-Allow-Origin" not in real.headers


def test_a_new_origin_is_allowed_once_its_app_lists_it(cors_issuer: Issuer) -> None:
    app = cors_issuer.new_app()
    headers = {"Origin": "https://new.example", "Access-Control-Request-Method": "POST"}
    path = "/v1/licenses/verify"
    assert (
        "Access-Control-Allow-Origin"
        not in cors_issuer.client.options(path, headers=headers).headers
    )
    sdk(cors_issuer, "PATCH", f"/v1/apps/{app.id}", {"allowed_origins": ["https://new.example"]})
    assert (
        cors_issuer.client.options(path, headers=headers).headers["Access-Control-Allow-Origin"]
        == "https://new.example"
    )
