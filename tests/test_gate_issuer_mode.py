"""Issuer mode: the license server gating its own routes with its own keys and store."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from flask import Flask
from gate_support import (
    CHALLENGE,
    INSUFFICIENT_SCOPE,
    INVALID_TOKEN,
    ISSUER,
    add_gated_routes,
    admin_headers,
    assert_refused,
    bearer,
    issue_token,
)

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.issuer import IssuerConfigurationError


@pytest.mark.parametrize("path", ["/reports/export", "/reports/export-async"])
def test_issuer_mode_token_from_verify_passes_the_gate(issuer_app: Flask, path: str) -> None:
    lic, token = issue_token(issuer_app, plan="pro", features=["export", "audit"])
    response = issuer_app.test_client().get(path, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["sub"] == lic.id
    assert body["aud"] == [lic.app_id]
    assert body["plan"] == "pro" and body["features"] == ["audit", "export"]
    assert body["iss"] == ISSUER


def test_issuer_mode_feature_and_missing_token(issuer_app: Flask) -> None:
    _, token = issue_token(issuer_app, features=["audit"])
    client = issuer_app.test_client()
    assert_refused(
        client.get("/reports/export", headers=bearer(token)),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert_refused(client.get("/reports/export"), 401, CHALLENGE, "unauthorized")


def test_issuer_mode_gate_checks_its_own_audience(issuer_app: Flask, tmp_path: Any) -> None:
    _, token = issue_token(issuer_app)
    other_lic, other_token = issue_token(issuer_app)
    # A second app on the same store, gating for one seller app only. Its shared verifier
    # (the one introspect uses) still accepts both apps' tokens.
    gated = Flask(__name__, instance_path=str(tmp_path / "instance"))
    gated.config.update(
        TESTING=True,
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{tmp_path}/licensechain.db",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_AUDIENCE=other_lic.app_id,
    )
    LicenseChain(gated)
    add_gated_routes(gated)
    client = gated.test_client()
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    assert client.get("/reports/export", headers=bearer(other_token)).status_code == 200
    assert get_state(gated).verifier.verify(token).sub  # introspect's view: still valid


def test_issuer_mode_api_revoke_and_activate_reach_the_gate_at_once(issuer_app: Flask) -> None:
    lic, token = issue_token(issuer_app)
    client = issuer_app.test_client()
    admin = admin_headers(issuer_app, "licenses:write")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200  # warm
    assert client.patch(f"/v1/licenses/{lic.id}/suspend", headers=admin, json={}).status_code == 200
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    assert (
        client.patch(f"/v1/licenses/{lic.id}/activate", headers=admin, json={}).status_code == 200
    )
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200


def test_issuer_mode_revoke_token_reaches_the_gate_at_once(issuer_app: Flask) -> None:
    _, token = issue_token(issuer_app)
    client = issuer_app.test_client()
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    revoked = client.post(
        "/v1/licenses/revoke-token",
        headers=admin_headers(issuer_app, "tokens:revoke"),
        json={"license_token": token},
    )
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )


# -- the issuer URL is configuration, never the Host header ---------------------------------


def bare_issuer(tmp_path: Any, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{tmp_path}/licensechain.db",
        LICENSECHAIN_ENCRYPTION_KEY="0" * 64,
        LICENSECHAIN_RATELIMIT_ENABLED=False,
        **config,
    )
    return app


def test_issuer_refuses_to_start_without_an_issuer_url(tmp_path: Any) -> None:
    with pytest.raises(IssuerConfigurationError, match=r"LICENSECHAIN_ISSUER.*SERVER_NAME"):
        LicenseChain(bare_issuer(tmp_path))


def test_issuer_url_from_server_name(tmp_path: Any) -> None:
    app = bare_issuer(tmp_path, SERVER_NAME="licenses.example.com", PREFERRED_URL_SCHEME="https")
    LicenseChain(app)
    assert get_state(app).settings.issuer == "https://licenses.example.com/v1"


def test_a_client_cannot_choose_the_iss_it_gets(tmp_path: Any) -> None:
    app = bare_issuer(tmp_path, LICENSECHAIN_ISSUER=ISSUER)
    LicenseChain(app)
    store = get_state(app).store
    assert store is not None
    key = store.licenses.create(store.apps.create("A").id).key
    client = app.test_client()
    for host in ("localhost", "127.0.0.1", "evil.example"):
        answer = client.post(
            "/v1/licenses/verify", json={"key": key}, headers={"Host": host}
        ).get_json()
        claims = jwt.decode(answer["license_token"], options={"verify_signature": False})
        assert claims["iss"] == ISSUER


def test_debug_and_testing_may_follow_the_host(tmp_path: Any) -> None:
    app = bare_issuer(tmp_path, TESTING=True)
    LicenseChain(app)
    assert get_state(app).settings.issuer is None
