"""``license_key_func``: Flask-Limiter's key for a premium route is the verified license's
``sub``, and otherwise the client address by the extension's one rule (``client_ip``):
``remote_addr``, so ``X-Forwarded-For`` counts only behind ``ProxyFix``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, jsonify
from flask_limiter import Limiter
from gate_support import JWKSServer, TokenFactory, integrator_app
from issuer_support import Issuer, close_issuer, make_issuer
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_licensechain import current_license, requires_feature
from flask_licensechain.client_ip import client_ip
from flask_licensechain.limiter_keys import IP_PREFIX, LICENSE_PREFIX, license_key_func


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    yield made
    close_issuer(made)


def _premium_app(issuer: Issuer) -> tuple[Flask, str, str]:
    """A premium route limited to 2/minute per license, beside @requires_feature."""
    app = issuer.app
    lic = issuer.new_license(features=["export"])
    limiter = Limiter(key_func=license_key_func, app=app, storage_uri="memory://")

    @app.get("/premium")
    @limiter.limit("2/minute", key_func=license_key_func)
    @requires_feature("export", audience=lic.app_id)
    def premium() -> object:
        return jsonify(ok=True)

    @app.get("/whoami")
    def whoami() -> object:
        return jsonify(key=license_key_func(), ip=client_ip())

    return app, lic.id, issuer.token_for(lic.key)


def test_a_valid_token_keys_by_its_license(issuer: Issuer) -> None:
    app, license_id, token = _premium_app(issuer)
    client = app.test_client()
    answer = client.get("/whoami", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert answer["key"] == LICENSE_PREFIX + license_id


def test_without_a_valid_token_it_keys_by_the_client_address(issuer: Issuer) -> None:
    app, _, token = _premium_app(issuer)
    client = app.test_client()
    for headers in ({}, {"Authorization": f"Bearer {token[:-4]}AAAA"}, {"Authorization": "x"}):
        answer = client.get("/whoami", headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"})
        assert answer.get_json()["key"] == IP_PREFIX + "10.1.2.3"


def test_the_address_follows_the_extension_rule_forwarded_only_behind_proxyfix(
    issuer: Issuer,
) -> None:
    app, _, _ = _premium_app(issuer)
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    base = {"REMOTE_ADDR": "10.0.0.1"}
    plain = app.test_client().get("/whoami", headers=forwarded, environ_base=base).get_json()
    assert plain["key"] == IP_PREFIX + plain["ip"] == IP_PREFIX + "10.0.0.1"
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    proxied = app.test_client().get("/whoami", headers=forwarded, environ_base=base).get_json()
    assert proxied["key"] == IP_PREFIX + proxied["ip"] == IP_PREFIX + "203.0.113.9"


def test_one_license_has_one_budget_whatever_its_address(issuer: Issuer) -> None:
    app, _, token = _premium_app(issuer)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    for address in ("10.0.0.1", "10.0.0.2"):
        response = client.get("/premium", headers=auth, environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 200
    refused = client.get("/premium", headers=auth, environ_base={"REMOTE_ADDR": "10.0.0.3"})
    assert refused.status_code == 429
    # Another client (no token) has its own budget, by address.
    assert client.get("/premium", environ_base={"REMOTE_ADDR": "10.0.0.4"}).status_code == 401


def test_a_revoked_token_is_not_a_license_key(issuer: Issuer) -> None:
    app, license_id, token = _premium_app(issuer)
    issuer.client.patch(f"/v1/licenses/{license_id}/revoke", headers=issuer.auth(), json={})
    answer = app.test_client().get(
        "/whoami",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    )
    assert answer.get_json()["key"] == IP_PREFIX + "10.9.9.9"


def test_the_readme_snippet_runs_as_written(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    (snippet,) = [block for block in blocks if "license_key_func" in block]
    app = integrator_app(jwks_server, RATELIMIT_STORAGE_URI="memory://")
    namespace = {"app": app, "requires_feature": requires_feature}
    namespace["current_license"] = current_license
    exec(snippet, namespace)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {make_gate_token(sub='lic_readme')}"}
    answer = client.get("/reports/heavy", headers=auth)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"licensed_to": "lic_readme"}
    assert client.get("/reports/heavy").status_code == 401
