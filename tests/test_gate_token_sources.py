"""The in-app gate reads the token where it is told: Bearer, X-License-Token, the cookie.

Integrator mode against a real JWKS server on loopback (``conftest.py``). Also: a CORS
preflight passes, ``current_license`` outside a gate, and cookie tokens and CSRF.
"""

from __future__ import annotations

import jwt
import pytest
from flask.testing import FlaskClient
from gate_support import (
    APP_ID,
    CHALLENGE,
    INVALID_TOKEN,
    ISSUER,
    JWKSServer,
    TokenFactory,
    assert_refused,
    bearer,
    integrator_app,
)

from flask_licensechain import current_license, get_current_license


@pytest.mark.parametrize("path", ["/reports/export", "/reports/export-async"])
def test_valid_token_reaches_view_with_current_license(
    gate_client: FlaskClient, make_gate_token: TokenFactory, path: str
) -> None:
    token = make_gate_token(features=("export", "audit"), plan="pro", sub="lic_42")
    claims = jwt.decode(token, options={"verify_signature": False})
    response = gate_client.get(path, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {
        "sub": "lic_42",
        "aud": [APP_ID],
        "plan": "pro",
        "features": ["audit", "export"],
        "jti": claims["jti"],
        "exp": claims["exp"],
        "iss": ISSUER,
        "token_use": "licensechain_license_v1",
    }


def test_warm_token_is_accepted_again(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    token = make_gate_token()
    for _ in range(3):
        assert gate_client.get("/reports/export", headers=bearer(token)).status_code == 200


def test_bearer_scheme_is_case_insensitive(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    response = gate_client.get(
        "/reports/export", headers={"Authorization": "bearer " + make_gate_token()}
    )
    assert response.status_code == 200


def test_missing_token_is_401_without_error_attribute(gate_client: FlaskClient) -> None:
    response = gate_client.get("/reports/export", headers={"X-Request-ID": "req-abc.123"})
    assert_refused(response, 401, CHALLENGE, "unauthorized", request_id="req-abc.123")


@pytest.mark.parametrize("path", ["/reports/export-async", "/licensed", "/licensed-async"])
def test_missing_token_refused_on_every_kind_of_view(gate_client: FlaskClient, path: str) -> None:
    assert_refused(gate_client.get(path), 401, CHALLENGE, "unauthorized")


def test_other_authorization_scheme_counts_as_missing(gate_client: FlaskClient) -> None:
    response = gate_client.get("/reports/export", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_refused(response, 401, CHALLENGE, "unauthorized")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer " + "x" * 9000],
)
def test_malformed_tokens_are_invalid_token(gate_client: FlaskClient, authorization: str) -> None:
    response = gate_client.get("/reports/export", headers={"Authorization": authorization})
    assert_refused(response, 401, INVALID_TOKEN, "unauthorized")


def test_x_license_token_and_cookie_are_off_by_default(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    token = make_gate_token()
    assert_refused(
        gate_client.get("/reports/export", headers={"X-License-Token": token}),
        401,
        CHALLENGE,
        "unauthorized",
    )
    gate_client.set_cookie("lc_token", token)
    assert_refused(gate_client.get("/reports/export"), 401, CHALLENGE, "unauthorized")


def test_x_license_token_when_enabled(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    client = integrator_app(
        jwks_server, LICENSECHAIN_TOKEN_SOURCES="bearer,x-license-token"
    ).test_client()
    response = client.get(
        "/reports/export", headers={"X-License-Token": make_gate_token(sub="lic_x")}
    )
    assert response.status_code == 200
    assert response.get_json()["sub"] == "lic_x"
    bad = client.get("/reports/export", headers={"X-License-Token": "garbage"})
    assert_refused(bad, 401, INVALID_TOKEN, "unauthorized")


def test_cookie_when_enabled(jwks_server: JWKSServer, make_gate_token: TokenFactory) -> None:
    client = integrator_app(
        jwks_server,
        LICENSECHAIN_TOKEN_SOURCES=["bearer", "cookie"],
        LICENSECHAIN_TOKEN_COOKIE="lc_token",
    ).test_client()
    client.set_cookie("other_cookie", make_gate_token())
    assert_refused(client.get("/reports/export"), 401, CHALLENGE, "unauthorized")
    client.set_cookie("lc_token", make_gate_token(sub="lic_cookie"))
    response = client.get("/reports/export")
    assert response.status_code == 200
    assert response.get_json()["sub"] == "lic_cookie"


def test_bearer_header_can_be_turned_off(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    app = integrator_app(jwks_server, LICENSECHAIN_TOKEN_SOURCES=("x-license-token",))
    client = app.test_client()
    assert_refused(
        client.get("/reports/export", headers=bearer(make_gate_token())),
        401,
        CHALLENGE,
        "unauthorized",
    )
    assert (
        client.get("/reports/export", headers={"X-License-Token": make_gate_token()}).status_code
        == 200
    )


def test_bearer_header_is_read_before_the_other_sources(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    client = integrator_app(
        jwks_server, LICENSECHAIN_TOKEN_SOURCES="bearer,x-license-token"
    ).test_client()
    response = client.get(
        "/reports/export",
        headers={**bearer(make_gate_token(sub="from_bearer")), "X-License-Token": "garbage"},
    )
    assert response.get_json()["sub"] == "from_bearer"


def test_options_preflight_is_not_blocked(gate_client: FlaskClient) -> None:
    preflight_headers = {
        "Origin": "https://app.example.test",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    explicit = gate_client.options("/preflight", headers=preflight_headers)
    assert explicit.status_code == 200
    assert explicit.get_json() == {"gated_view_ran": True, "license": False}
    automatic = gate_client.options("/reports/export", headers=preflight_headers)
    assert automatic.status_code == 200
    assert "GET" in automatic.headers["Allow"]
    # The same route still refuses a GET without a token.
    assert gate_client.get("/preflight").status_code == 401


def test_current_license_outside_a_gated_view(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    response = gate_client.get("/open", headers=bearer(make_gate_token()))
    assert response.get_json() == {"license": False}
    assert get_current_license() is None
    with pytest.raises(RuntimeError, match="only set inside a view protected"):
        _ = current_license.sub


# -- cookie tokens and CSRF -------------------------------------------------------------------


def cookie_client(server: JWKSServer, token: str) -> FlaskClient:
    app = integrator_app(server, LICENSECHAIN_TOKEN_SOURCES="bearer,cookie")
    client = app.test_client()
    client.set_cookie("license_token", token, domain="app.example")
    return client


def test_cookie_alone_does_not_authorise_a_cross_site_post(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    client = cookie_client(jwks_server, make_gate_token())
    base = "https://app.example"
    refused = client.post("/reports/run", base_url=base, headers={"Origin": "https://evil.example"})
    assert_refused(refused, 403, None, "insufficient_scope")
    assert client.post("/reports/run", base_url=base).status_code == 403  # no proof at all
    same = client.post("/reports/run", base_url=base, headers={"Origin": base})
    assert same.status_code == 200
    fetch = client.post("/reports/run", base_url=base, headers={"Sec-Fetch-Site": "same-origin"})
    assert fetch.status_code == 200
    client.set_cookie("license_csrf", "s3cret", domain="app.example")
    double = client.post("/reports/run", base_url=base, headers={"X-CSRF-Token": "s3cret"})
    assert double.status_code == 200
    wrong = client.post("/reports/run", base_url=base, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    # Safe methods and header tokens need no proof.
    assert client.get("/reports/export", base_url=base).status_code == 200
    bearer_post = client.post(
        "/reports/run",
        base_url=base,
        headers={**bearer(make_gate_token()), "Origin": "https://evil.example"},
    )
    assert bearer_post.status_code == 200
