"""Answers that help a client recover: every 503 says when to retry (``Retry-After``, RFC 9110
section 10.2.3), and the 403 for a missing feature reads the same from the in-app gate and
from the gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import abort
from gate_support import APP_ID, ISSUER, JWKSServer, bearer, integrator_app, token_factory
from gateway_support.gateway_config import write_config
from issuer_support import Issuer, close_issuer, make_issuer
from licensechain_middleware.gateway.config import load_config
from licensechain_middleware.gateway.ops import OpsEndpoints
from licensechain_middleware.gateway.wsgi import build_app
from werkzeug.test import Client

from flask_licensechain.core.errors import Unavailable
from flask_licensechain.core.gate import FEATURE_MISSING_MESSAGE
from flask_licensechain.core.keys import SigningKey


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    yield made
    close_issuer(made)


# -- every 503 carries Retry-After ---------------------------------------------------------


def test_health_degraded_says_when_to_retry(issuer: Issuer) -> None:
    issuer.store.ping = _down  # the store stops answering
    response = issuer.client.get("/v1/health")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    root = issuer.client.get("/health")
    assert root.status_code == 503 and int(root.headers["Retry-After"]) >= 1


def test_a_store_that_is_down_mid_request_is_503_with_retry_after(issuer: Issuer) -> None:
    import sqlalchemy.exc

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, ConnectionError("down"))

    issuer.store.licenses.list = failing
    response = issuer.client.get("/v1/licenses", headers=issuer.auth())
    assert response.status_code == 503 and response.get_json()["error"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_a_503_from_the_host_app_gets_retry_after_too(issuer: Issuer) -> None:
    @issuer.app.get("/maintenance")
    def maintenance() -> Any:
        abort(503)

    response = issuer.client.get("/maintenance")
    assert response.status_code == 503 and response.get_json()["error"] == "unavailable"
    assert response.headers["Retry-After"] == str(Unavailable.retry_after)


def test_the_gateway_readiness_503_says_when_to_retry() -> None:
    answer = OpsEndpoints().answer("GET", "/_licensechain/ready", {"denylist": False})
    assert answer.status == 503
    assert dict(answer.headers)["Retry-After"] == str(Unavailable.retry_after)
    ready = OpsEndpoints().answer("GET", "/_licensechain/ready", {"denylist": True})
    assert "Retry-After" not in dict(ready.headers)


def _down() -> None:
    raise ConnectionError("store down")


# -- the 403 for a missing feature ------------------------------------------------------------


def test_the_missing_feature_403_is_the_same_in_the_app_and_the_gateway(
    gate_key: SigningKey, jwks_server: JWKSServer, tmp_path: Path
) -> None:
    token = token_factory(gate_key, ISSUER, APP_ID)(features=("other",))
    in_app = integrator_app(jwks_server).test_client().get("/reports/export", headers=bearer(token))

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [gate_key.jwk()]}), encoding="utf-8")
    config = write_config(
        tmp_path,
        upstream="http://127.0.0.1:9",  # never reached: the gate answers
        jwks_file=jwks,
        rules='[[rules]]\npath = "/reports/export"\nfeatures = ["export"]\n',
    )
    config_text = config.read_text().replace('"https://licenses.test"', f'"{ISSUER}"')
    config.write_text(config_text.replace('"app_gateway_test"', f'"{APP_ID}"'))
    gateway = build_app(load_config(config, env={}))
    try:
        proxied = Client(gateway).get("/reports/export", headers=bearer(token))
    finally:
        gateway.close()

    assert in_app.status_code == proxied.status_code == 403
    app_body, gateway_body = in_app.get_json(), json.loads(proxied.get_data())
    assert app_body["message"] == gateway_body["message"] == FEATURE_MISSING_MESSAGE
    app_body.pop("request_id"), gateway_body.pop("request_id")
    assert app_body == gateway_body
    assert in_app.headers["WWW-Authenticate"] == proxied.headers["WWW-Authenticate"]
