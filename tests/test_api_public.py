"""The public endpoints, field by field: verify, validate-hardware, jwks, introspect, health."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from issuer_support import (
    Issuer,
    close_issuer,
    decode_unverified,
    error_body,
    make_issuer,
)

from flask_licensechain.core.contract import TOKEN_USE, build_claims
from flask_licensechain.core.keys import thumbprint

pytest_plugins = ["issuer_fixtures"]  # the issuer fixtures

VALID_FIELDS = {
    "valid",
    "status",
    "id",
    "appId",
    "plan",
    "features",
    "expiresAt",
    "email",
    "verificationType",
    "hwBound",
    "metadata",
    "license_token",
    "license_token_expires_at",
    "license_jwks_uri",
    # for LicenseChain's SDK helpers: the nested license and a top-level expires_at
    "license",
    "expires_at",
}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def iso_to_unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


# -- verify: the valid answer and its token ------------------------------------------------


def test_verify_valid_answer_has_exactly_the_contract_fields(issuer: Issuer) -> None:
    app = issuer.new_app(tier="pro")
    lic = issuer.new_license(
        app.id, plan="pro", features=["export", "sync"], issued_email="a@example.com"
    )
    before = int(time.time())
    response = issuer.client.post(
        "/v1/licenses/verify",
        json={"key": lic.key},
        headers={"User-Agent": "client/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    after = int(time.time())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    body = response.get_json()
    assert set(body) == VALID_FIELDS
    assert body["valid"] is True
    assert body["status"] == "ACTIVE"
    assert body["id"] == lic.id
    assert body["appId"] == app.id
    assert body["plan"] == "pro"
    assert body["features"] == ["export", "sync"]
    assert body["expiresAt"] is None
    assert body["email"] == "a@example.com"
    assert body["verificationType"] == "advanced"
    assert body["hwBound"] is False
    assert body["metadata"]["ipAddress"] == "203.0.113.9"
    assert body["metadata"]["userAgent"] == "client/1.0"
    assert ISO_UTC.match(body["metadata"]["verifiedAt"])
    assert before <= iso_to_unix(body["metadata"]["verifiedAt"]) <= after
    assert body["license_jwks_uri"] == "http://localhost/v1/licenses/jwks"
    _, claims = decode_unverified(body["license_token"])
    assert ISO_UTC.match(body["license_token_expires_at"])
    assert iso_to_unix(body["license_token_expires_at"]) == claims["exp"]


def test_token_header_and_every_claim(issuer: Issuer) -> None:
    app = issuer.new_app(tier="pro")
    lic = issuer.new_license(app.id, plan="gold", features=["a"])
    before = int(time.time())
    token = issuer.token_for(lic.key)
    header, claims = decode_unverified(token)
    active_kid = issuer.state.keyring.active_key().kid  # type: ignore[union-attr]
    assert header == {"alg": "RS256", "typ": "JWT", "kid": active_kid}
    jwks = issuer.client.get("/v1/licenses/jwks").get_json()
    assert thumbprint(jwks["keys"][0]) == active_kid
    assert set(claims) == {
        "iss",
        "sub",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
        "token_use",
        "lc_vt",
        "seller_tier",
        "status",
        "hw_bound",
        "plan",
        "features",
    }
    assert claims["iss"] == "http://localhost/v1"
    assert claims["sub"] == lic.id
    assert claims["aud"] == app.id
    assert before <= claims["iat"] <= int(time.time())
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 3600
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", claims["jti"])  # >= 128 bits, URL-safe
    assert claims["token_use"] == TOKEN_USE
    assert claims["lc_vt"] == "advanced"
    assert claims["seller_tier"] == "pro"
    assert claims["status"] == "ACTIVE"
    assert claims["hw_bound"] is False
    assert claims["plan"] == "gold"
    assert claims["features"] == ["a"]
    # and it verifies against the served JWKS with plain PyJWT
    key = jwt.PyJWK(jwks["keys"][0]).key
    jwt.decode(token, key, algorithms=["RS256"], audience=app.id, issuer="http://localhost/v1")


@pytest.mark.parametrize(
    ("tier", "lc_vt", "ttl"),
    [
        ("free", "basic", 900),
        ("pro", "advanced", 3600),
        ("business", "custom", 86400),
        ("enterprise", "custom", 86400),
    ],
)
def test_token_ttl_by_tier(sqlite_issuer: Issuer, tier: str, lc_vt: str, ttl: int) -> None:
    lic = sqlite_issuer.new_license(sqlite_issuer.new_app(tier=tier).id)
    body = sqlite_issuer.verify(key=lic.key).get_json()
    _, claims = decode_unverified(body["license_token"])
    assert claims["exp"] - claims["iat"] == ttl
    assert claims["lc_vt"] == lc_vt == body["verificationType"]
    assert claims["seller_tier"] == tier


def test_exp_is_capped_at_license_expiry(issuer: Issuer) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=600)
    lic = issuer.new_license(issuer.new_app(tier="business").id, expires_at=expires)
    body = issuer.verify(key=lic.key).get_json()
    _, claims = decode_unverified(body["license_token"])
    assert claims["license_exp"] == int(expires.timestamp())
    assert claims["exp"] == int(expires.timestamp())  # not iat + 86400
    assert body["expiresAt"] == expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert iso_to_unix(body["license_token_expires_at"]) == int(expires.timestamp())


def test_license_exp_far_away_does_not_shorten_the_token(sqlite_issuer: Issuer) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    lic = sqlite_issuer.new_license(sqlite_issuer.new_app(tier="free").id, expires_at=expires)
    _, claims = decode_unverified(sqlite_issuer.token_for(lic.key))
    assert claims["exp"] - claims["iat"] == 900
    assert claims["license_exp"] == int(expires.timestamp())


def test_each_verify_issues_a_fresh_jti(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    jtis = {decode_unverified(sqlite_issuer.token_for(lic.key))[1]["jti"] for _ in range(5)}
    assert len(jtis) == 5


def test_configured_issuer_is_used(tmp_path: Path) -> None:
    made = make_issuer(tmp_path, issuer="https://licenses.example.com")
    try:
        lic = made.new_license()
        body = made.verify(key=lic.key).get_json()
        _, claims = decode_unverified(body["license_token"])
        assert claims["iss"] == "https://licenses.example.com"
        assert made.introspect(body["license_token"])["active"] is True
        # the JWKS URL still names where this API is served
        assert body["license_jwks_uri"] == "http://localhost/v1/licenses/jwks"
    finally:
        close_issuer(made)


def test_jwks_uri_follows_host_and_scheme(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    response = sqlite_issuer.client.post(
        "/v1/licenses/verify", json={"key": lic.key}, base_url="https://lic.example.org:8443"
    )
    body = response.get_json()
    assert body["license_jwks_uri"] == "https://lic.example.org:8443/v1/licenses/jwks"
    assert decode_unverified(body["license_token"])[1]["iss"] == "https://lic.example.org:8443/v1"


# -- verify: aliases ---------------------------------------------------------------------


@pytest.mark.parametrize("key_field", ["key", "licenseKey", "license_key"])
@pytest.mark.parametrize("app_field", ["app_id", "appId"])
@pytest.mark.parametrize("hw_field", ["hwuid", "hardwareId"])
def test_field_aliases(
    sqlite_issuer: Issuer, key_field: str, app_field: str, hw_field: str
) -> None:
    app = sqlite_issuer.new_app()
    lic = sqlite_issuer.new_license(app.id)
    body = sqlite_issuer.verify(
        **{key_field: lic.key, app_field: app.id, hw_field: "machine-1"}
    ).get_json()
    assert body["valid"] is True
    assert body["hwBound"] is True
    assert decode_unverified(body["license_token"])[1]["hw_bound"] is True
    # the alias really was read: another app id refuses, another hwuid takes no slot
    refused = sqlite_issuer.verify(**{key_field: lic.key, app_field: "app_other"}).get_json()
    assert refused == {"valid": False, "reason": "app_mismatch"}
    full = sqlite_issuer.verify(**{key_field: lic.key, hw_field: "machine-2"}).get_json()
    assert full["reason"] == "hardware_id_mismatch"


def test_key_is_case_and_blank_insensitive(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    assert sqlite_issuer.verify(key=f"  {lic.key.lower()} ").get_json()["valid"] is True


# -- verify: every reason ----------------------------------------------------------------


def test_reason_license_not_found(issuer: Issuer) -> None:
    response = issuer.verify(key="LC-AAAAAA-BBBBBB-CCCCCC")
    assert response.status_code == 200
    assert response.get_json() == {"valid": False, "reason": "license_not_found"}
    assert response.headers["Cache-Control"] == "no-store"


def test_reason_license_not_found_for_overlong_key(sqlite_issuer: Issuer) -> None:
    body = sqlite_issuer.verify(key="LC-" + "A" * 200).get_json()
    assert body == {"valid": False, "reason": "license_not_found"}


def test_reason_app_mismatch(issuer: Issuer) -> None:
    lic = issuer.new_license()
    other = issuer.new_app(name="Other")
    body = issuer.verify(key=lic.key, app_id=other.id).get_json()
    assert body == {"valid": False, "reason": "app_mismatch"}


def test_reason_license_expired(issuer: Issuer) -> None:
    lic = issuer.new_license(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    body = issuer.verify(key=lic.key).get_json()
    assert body == {"valid": False, "reason": "license_expired", "status": "EXPIRED"}


def test_reason_license_suspended(issuer: Issuer) -> None:
    lic = issuer.new_license()
    issuer.store.licenses.set_status(lic.id, "SUSPENDED")
    body = issuer.verify(key=lic.key).get_json()
    assert body == {"valid": False, "reason": "license_suspended", "status": "SUSPENDED"}


def test_reason_license_revoked(issuer: Issuer) -> None:
    lic = issuer.new_license(expires_at=datetime.now(UTC) - timedelta(days=1))
    issuer.store.licenses.set_status(lic.id, "REVOKED")
    body = issuer.verify(key=lic.key).get_json()
    # a revoked license says revoked even once its expiry has passed
    assert body == {"valid": False, "reason": "license_revoked", "status": "REVOKED"}


def test_reason_hardware_id_required(issuer: Issuer) -> None:
    lic = issuer.new_license(require_hwuid=True)
    body = issuer.verify(key=lic.key).get_json()
    assert body == {"valid": False, "reason": "hardware_id_required", "status": "ACTIVE"}
    assert issuer.verify(key=lic.key, hwuid="m1").get_json()["valid"] is True


def test_reason_hardware_id_mismatch(issuer: Issuer) -> None:
    lic = issuer.new_license(max_devices=1)
    assert issuer.verify(key=lic.key, hwuid="m1").get_json()["valid"] is True
    body = issuer.verify(key=lic.key, hwuid="m2").get_json()
    assert body == {"valid": False, "reason": "hardware_id_mismatch", "status": "ACTIVE"}


def test_status_outranks_hardware_and_app_outranks_status(issuer: Issuer) -> None:
    lic = issuer.new_license(require_hwuid=True)
    issuer.store.licenses.set_status(lic.id, "SUSPENDED")
    assert issuer.verify(key=lic.key).get_json()["reason"] == "license_suspended"
    assert issuer.verify(key=lic.key, app_id="app_x").get_json()["reason"] == "app_mismatch"
    # a refused request binds nothing
    assert issuer.store.licenses.get(lic.id).devices == ()
    issuer.verify(key=lic.key, hwuid="m1")
    assert issuer.store.licenses.get(lic.id).devices == ()


# -- device slots --------------------------------------------------------------------------


def test_device_slots(issuer: Issuer) -> None:
    lic = issuer.new_license(max_devices=2)
    assert issuer.verify(key=lic.key, hwuid="a").get_json()["hwBound"] is True
    assert issuer.verify(key=lic.key, hwuid="b").get_json()["hwBound"] is True
    assert issuer.verify(key=lic.key, hwuid="c").get_json()["reason"] == "hardware_id_mismatch"
    again = issuer.verify(key=lic.key, hwuid="a").get_json()  # bound: passes, still bound
    assert (again["valid"], again["hwBound"]) == (True, True)
    assert issuer.verify(key=lic.key).get_json()["hwBound"] is False  # no hwuid, not required
    bound = [d.hwuid for d in issuer.store.licenses.get(lic.id).devices]
    assert sorted(bound) == ["a", "b"]
    released = issuer.client.delete(f"/v1/licenses/{lic.id}/devices/b", headers=issuer.auth())
    assert released.status_code == 200
    assert [d["hwuid"] for d in released.get_json()["devices"]] == ["a"]
    assert issuer.verify(key=lic.key, hwuid="c").get_json()["hwBound"] is True


def test_known_device_refreshes_last_seen_at_most_once_a_minute(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    sqlite_issuer.verify(key=lic.key, hwuid="m1")
    first = sqlite_issuer.store.licenses.get(lic.id).devices[0]
    sqlite_issuer.verify(key=lic.key, hwuid="m1")
    assert sqlite_issuer.store.licenses.get(lic.id).devices[0] == first  # a pure read


# -- validate-hardware -------------------------------------------------------------------


def test_validate_hardware(issuer: Issuer) -> None:
    lic = issuer.new_license(max_devices=1)
    response = issuer.post(
        "/v1/licenses/validate-hardware", {"licenseKey": lic.key, "hardwareId": "m1"}
    )
    body = response.get_json()
    assert response.status_code == 200
    assert set(body) == VALID_FIELDS
    assert body["hwBound"] is True
    assert decode_unverified(body["license_token"])[1]["hw_bound"] is True
    assert response.headers["Cache-Control"] == "no-store"
    other = issuer.post("/v1/licenses/validate-hardware", {"key": lic.key, "hwuid": "m2"})
    assert other.get_json() == {
        "valid": False,
        "reason": "hardware_id_mismatch",
        "status": "ACTIVE",
    }


@pytest.mark.parametrize("body", [{"key": "LC-AAAAAA-BBBBBB-CCCCCC"}, {"hwuid": "m1"}, {}])
def test_validate_hardware_needs_key_and_hwuid(sqlite_issuer: Issuer, body: dict[str, str]) -> None:
    response = sqlite_issuer.post("/v1/licenses/validate-hardware", body)
    error_body(response, 400, "invalid_request")


def test_validate_hardware_reasons(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    path = "/v1/licenses/validate-hardware"
    unknown = sqlite_issuer.post(path, {"key": "LC-ZZZZZZ-ZZZZZZ-ZZZZZZ", "hwuid": "m"})
    assert unknown.get_json() == {"valid": False, "reason": "license_not_found"}
    sqlite_issuer.store.licenses.set_status(lic.id, "REVOKED")
    revoked = sqlite_issuer.post(path, {"key": lic.key, "hwuid": "m"})
    assert revoked.get_json() == {"valid": False, "reason": "license_revoked", "status": "REVOKED"}


# -- jwks ------------------------------------------------------------------------------------


def test_jwks(issuer: Issuer) -> None:
    response = issuer.client.get("/v1/licenses/jwks")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["X-Request-ID"]
    keys = response.get_json()["keys"]
    assert len(keys) == 1
    (key,) = keys
    assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (key["kty"], key["use"], key["alg"], key["e"]) == ("RSA", "sig", "RS256", "AQAB")
    assert key["kid"] == thumbprint(key)
    assert len(jwt.PyJWK(key).key.public_numbers().n.to_bytes(256, "big")) == 256  # 2048 bits
    etag = response.headers["ETag"]
    cached = issuer.client.get("/v1/licenses/jwks", headers={"If-None-Match": etag})
    assert cached.status_code == 304


# -- introspect ------------------------------------------------------------------------------


def test_introspect_active_returns_claims_and_live_status(issuer: Issuer) -> None:
    lic = issuer.new_license(plan="p", features=["f"])
    token = issuer.token_for(lic.key)
    _, claims = decode_unverified(token)
    response = issuer.post("/v1/licenses/introspect", {"token": token})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {"active": True, **claims, "status": "ACTIVE"}


def test_introspect_reason_token_invalid(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    token = sqlite_issuer.token_for(lic.key)
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    for bad in ("garbage", tampered, "a.b.c", ""):
        if bad == "":
            response = sqlite_issuer.post("/v1/licenses/introspect", {"token": bad})
            error_body(response, 400, "invalid_request")
            continue
        assert sqlite_issuer.introspect(bad) == {"active": False, "reason": "token_invalid"}


def test_introspect_reason_token_invalid_for_foreign_key(sqlite_issuer: Issuer) -> None:
    from flask_licensechain.core.keys import SigningKey

    foreign = SigningKey.generate()
    claims = build_claims(
        issuer="http://localhost/v1",
        license_id="lic_x",
        app_id="app_x",
        seller_tier="pro",
        plan=None,
        features=[],
        license_exp=None,
        hw_bound=False,
        now=int(time.time()),
    )
    token = jwt.encode(claims, foreign.private_key, algorithm="RS256", headers={"kid": foreign.kid})
    assert sqlite_issuer.introspect(token) == {"active": False, "reason": "token_invalid"}


def _signed(issuer: Issuer, license_id: str, app_id: str, now: int) -> str:
    claims = build_claims(
        issuer="http://localhost/v1",
        license_id=license_id,
        app_id=app_id,
        seller_tier="free",
        plan=None,
        features=[],
        license_exp=None,
        hw_bound=False,
        now=now,
    )
    return issuer.state.keyring.sign(claims)  # type: ignore[union-attr]


def test_introspect_reason_token_expired(issuer: Issuer) -> None:
    lic = issuer.new_license()
    token = _signed(issuer, lic.id, lic.app_id, now=int(time.time()) - 10_000)
    assert issuer.introspect(token) == {"active": False, "reason": "token_expired"}


def test_introspect_reason_license_not_found(issuer: Issuer) -> None:
    token = _signed(issuer, "lic_000000000000000000000000", "app_x", now=int(time.time()))
    assert issuer.introspect(token) == {"active": False, "reason": "license_not_found"}


def test_introspect_reason_license_expired(issuer: Issuer) -> None:
    lic = issuer.new_license()
    token = issuer.token_for(lic.key)
    issuer.store.licenses.update(lic.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert issuer.introspect(token) == {"active": False, "reason": "license_expired"}


@pytest.mark.parametrize(
    ("status", "reason"), [("SUSPENDED", "license_suspended"), ("REVOKED", "license_revoked")]
)
def test_introspect_reason_from_live_status(issuer: Issuer, status: str, reason: str) -> None:
    lic = issuer.new_license()
    token = issuer.token_for(lic.key)
    issuer.store.licenses.set_status(lic.id, status)  # the store only, no denylist entry
    assert issuer.introspect(token) == {"active": False, "reason": reason}


def test_introspect_reason_token_revoked(issuer: Issuer) -> None:
    lic = issuer.new_license()
    token = issuer.token_for(lic.key)
    jti = decode_unverified(token)[1]["jti"]
    revoked = issuer.post("/v1/licenses/revoke-token", {"jti": jti}, headers=issuer.auth())
    assert revoked.get_json() == {"revoked": True, "jti": jti}
    assert issuer.introspect(token) == {"active": False, "reason": "token_revoked"}
    other = issuer.token_for(lic.key)  # another token of the same license still passes
    assert issuer.introspect(other)["active"] is True


def test_introspect_needs_a_string_token(sqlite_issuer: Issuer) -> None:
    for body in ({}, {"token": 5}, {"license_token": ["x"]}):
        error_body(sqlite_issuer.post("/v1/licenses/introspect", body), 400, "invalid_request")


def test_introspect_follows_the_store_when_the_denylist_redis_is_down(tmp_path: Path) -> None:
    # The store is the record: an unreachable Redis never turns a revoked token active, and
    # never turns a live one into a 503.
    from conftest import free_port

    made = make_issuer(tmp_path, denylist_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        lic = made.new_license()
        token, revoked = made.token_for(lic.key), made.token_for(lic.key)
        response = made.post(
            "/v1/licenses/revoke-token", {"license_token": revoked}, headers=made.auth()
        )
        assert response.status_code == 200
        assert made.introspect(token)["active"] is True
        assert made.introspect(revoked) == {"active": False, "reason": "token_revoked"}
        assert made.client.get("/v1/health").get_json()["checks"]["denylist"] == "down"
    finally:
        close_issuer(made)


# -- health ----------------------------------------------------------------------------------


def test_health_ok(issuer: Issuer) -> None:
    before = int(time.time())
    response = issuer.client.get("/v1/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["version"] == "0.1.0"
    assert before <= iso_to_unix(body["timestamp"]) <= int(time.time())
    assert body["checks"] == {"store": "ok", "denylist": "ok"}
    assert "failing" not in body


def test_health_names_a_dead_redis(tmp_path: Path) -> None:
    from conftest import free_port

    made = make_issuer(tmp_path, denylist_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        response = made.client.get("/v1/health")
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "degraded"
        assert body["failing"] == ["denylist"]
        assert body["checks"] == {"store": "ok", "denylist": "down"}
        assert response.headers["X-Request-ID"]
    finally:
        close_issuer(made)


def test_health_names_a_dead_store(sqlite_issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_licensechain.core.errors import Unavailable

    def down() -> None:
        raise Unavailable(detail="database is gone")

    monkeypatch.setattr(sqlite_issuer.store, "ping", down)
    response = sqlite_issuer.client.get("/v1/health")
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["store"]


def test_openapi_document_is_served(sqlite_issuer: Issuer) -> None:
    response = sqlite_issuer.client.get("/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    assert "/v1/licenses/verify" in document["paths"]


# -- request ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/licenses/jwks", "/v1/health", "/v1/nope", "/v1/apps"])
def test_sane_request_id_is_echoed_everywhere(sqlite_issuer: Issuer, path: str) -> None:
    response = sqlite_issuer.client.get(path, headers={"X-Request-ID": "req-42:abc/DEF"})
    assert response.headers["X-Request-ID"] == "req-42:abc/DEF"


@pytest.mark.parametrize("sent", ["a" * 129, "has space", "tab\there", "caf\u00e9", ""])
def test_insane_request_id_is_replaced(sqlite_issuer: Issuer, sent: str) -> None:
    response = sqlite_issuer.client.get("/v1/health", headers={"X-Request-ID": sent})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_request_id_of_128_chars_is_kept(sqlite_issuer: Issuer) -> None:
    sent = "r" * 128
    response = sqlite_issuer.verify(key="LC-AAAAAA-AAAAAA-AAAAAA")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    response = sqlite_issuer.client.post(
        "/v1/licenses/verify", json={"key": "x"}, headers={"X-Request-ID": sent}
    )
    assert response.headers["X-Request-ID"] == sent
