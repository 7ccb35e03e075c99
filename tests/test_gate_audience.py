"""A gate accepts only the tokens of the app(s) it knows, or says it cannot start.

Integrator apps need ``LICENSECHAIN_AUDIENCE`` (or an explicit
``LICENSECHAIN_VERIFY_AUDIENCE = False``); an issuer app gives the audience in config
or per decorator (``audience=``), as ``GateConfig`` does for the middleware.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify
from gate_support import (
    ISSUER,
    JWKSServer,
    TokenFactory,
    add_gated_routes,
    assert_refused,
    bearer,
    integrator_app,
    issue_token,
    issuer_app_with,
    token_factory,
)

from flask_licensechain import LicenseChain, get_state, requires_feature
from flask_licensechain.core.errors import ConfigError
from flask_licensechain.core.keys import SigningKey


def test_integrator_without_an_audience_refuses_to_start(jwks_server: JWKSServer) -> None:
    app = Flask(__name__)
    app.config.update(LICENSECHAIN_JWKS_URL=jwks_server.base + "/jwks", LICENSECHAIN_ISSUER=ISSUER)
    with pytest.raises(ConfigError, match=r"LICENSECHAIN_AUDIENCE.*LICENSECHAIN_VERIFY_AUDIENCE"):
        LicenseChain(app)


def test_integrator_refuses_another_apps_token(
    jwks_server: JWKSServer, gate_key: SigningKey, make_gate_token: TokenFactory
) -> None:
    client = integrator_app(jwks_server).test_client()
    other = token_factory(gate_key, ISSUER, "another_app_same_issuer")(features=("export",))
    response = client.get("/reports/export", headers=bearer(other))
    assert_refused(
        response,
        401,
        'Bearer realm="licensechain", error="invalid_token"',
        "unauthorized",
        reason="wrong_audience",
    )
    assert client.get("/reports/export", headers=bearer(make_gate_token())).status_code == 200


def test_audience_check_off_on_purpose(jwks_server: JWKSServer, gate_key: SigningKey) -> None:
    app = Flask(__name__)
    app.config.update(
        LICENSECHAIN_JWKS_URL=jwks_server.base + "/jwks",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_VERIFY_AUDIENCE="false",
    )
    LicenseChain(app)
    add_gated_routes(app)
    other = token_factory(gate_key, ISSUER, "another_app_same_issuer")()
    assert app.test_client().get("/reports/export", headers=bearer(other)).status_code == 200


def test_audience_and_verify_audience_off_is_a_contradiction(jwks_server: JWKSServer) -> None:
    with pytest.raises(ConfigError, match="choose one"):
        integrator_app(jwks_server, LICENSECHAIN_VERIFY_AUDIENCE=False)


def test_issuer_gate_without_an_audience_is_a_clear_error(tmp_path: Any) -> None:
    app = issuer_app_with(tmp_path)
    _, token = issue_token(app)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="audience="):
        app.test_client().get("/reports/export", headers=bearer(token))


def test_issuer_gate_with_a_decorator_audience(tmp_path: Any) -> None:
    app = issuer_app_with(tmp_path, gated=False)
    store = get_state(app).store
    assert store is not None
    mine = store.apps.create("mine", tier="pro")

    @app.get("/mine")
    @requires_feature("export", audience=mine.id)
    def only_mine() -> Any:
        return jsonify(ok=True)

    client = app.test_client()
    key = store.licenses.create(mine.id, plan="pro", features=["export"]).key
    mine_token = client.post("/v1/licenses/verify", json={"key": key}).get_json()["license_token"]
    _, theirs_token = issue_token(app)
    assert client.get("/mine", headers=bearer(mine_token)).status_code == 200
    refused = client.get("/mine", headers=bearer(theirs_token))
    assert refused.status_code == 401 and refused.get_json()["reason"] == "wrong_audience"


def test_issuer_gate_with_a_configured_audience(tmp_path: Any) -> None:
    first = issuer_app_with(tmp_path / "a", gated=False)
    mine, mine_token = issue_token(first)
    _, theirs_token = issue_token(first)
    # The same store under an app configured for one seller app.
    gated = issuer_app_with(tmp_path / "a", LICENSECHAIN_AUDIENCE=[mine.app_id])
    client = gated.test_client()
    assert client.get("/reports/export", headers=bearer(mine_token)).status_code == 200
    assert client.get("/reports/export", headers=bearer(theirs_token)).status_code == 401
