"""The WSGI and ASGI gates apply the one core gate alike: client address, cookie CSRF,
request ids, the header-size cap, 503s, and a configuration repr without secrets."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import free_port
from licensechain_middleware import RESULT_KEY, GateConfig, LicenseGate, LicenseGateASGI, Rule
from middleware_support import (
    EchoASGI,
    EchoWSGI,
    Issuer,
    asgi_scope,
    call_asgi,
    call_wsgi,
    gate_config,
    wsgi_environ,
)

from flask_licensechain.core.gate import FEATURE_MISSING_MESSAGE

Headers = list[tuple[str, str]]


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def wsgi(gate: LicenseGate, method: str, target: str, headers: Headers) -> tuple[int, Any, Any]:
    environ = wsgi_environ(method, target, headers)
    response = call_wsgi(gate, environ)
    return response.status, response, environ


def asgi(gate: LicenseGateASGI, method: str, target: str, headers: Headers) -> tuple[int, Any, Any]:
    scope = asgi_scope(method, target, headers)
    response = call_asgi(gate, scope)
    return response.status, response, scope


# -- the client address ---------------------------------------------------------------


def test_asgi_underscore_forwarded_for_never_chooses_the_client(issuer: Issuer) -> None:
    rules = (Rule("/limited/**", public=True, rate_limit="2/minute"),)
    config = gate_config(issuer, rules=rules, trusted_proxies=("127.0.0.1/32",))
    gate = LicenseGateASGI(EchoASGI(), config)
    statuses = []
    for i in range(3):
        headers = [("x-forwarded-for", "1.1.1.1"), ("x_forwarded_for", f"6.6.6.{i}")]
        status, _, scope = asgi(gate, "GET", "/limited/x", headers)
        statuses.append(status)
        assert scope[RESULT_KEY].client_ip == "1.1.1.1"
    assert statuses == [200, 200, 429]


def test_asgi_drops_underscore_spellings_of_managed_headers(issuer: Issuer) -> None:
    echo = EchoASGI()
    gate = LicenseGateASGI(echo, gate_config(issuer))
    forged = [
        ("x_real_ip", "6.6.6.6"),
        ("x_forwarded_host", "evil"),
        ("X_License_Subject", "lic_forged"),
        ("x_request_id", "forged"),
        ("content_length", "5"),
        ("x_custom_header", "kept"),
    ]
    status, _, _ = asgi(gate, "GET", "/public/x", forged)
    assert status == 200
    names = [k.decode() for k, _ in echo.last["headers"]]
    assert "x_custom_header" in names  # not ours: left alone
    for name, _ in forged[:-1]:
        assert name.lower() not in names


# -- cookie tokens and CSRF --------------------------------------------------------------

CROSS_SITE = [("Origin", "https://evil.example"), ("Host", "app.example")]


@pytest.mark.parametrize("adapter", ["wsgi", "asgi"])
def test_cookie_alone_does_not_authorise_a_cross_site_post(issuer: Issuer, adapter: str) -> None:
    config = gate_config(issuer, token_sources=("bearer", "cookie"), token_cookie="lc")
    cookie = ("Cookie", f"lc={issuer.token()}")
    if adapter == "wsgi":
        gate: Any = LicenseGate(EchoWSGI(), config)
        call = wsgi
    else:
        gate = LicenseGateASGI(EchoASGI(), config)
        call = asgi
    status, response, _ = call(gate, "POST", "/x", [cookie, *CROSS_SITE])
    assert status == 403
    assert response.json()["error"] == "insufficient_scope"
    assert call(gate, "GET", "/x", [cookie, *CROSS_SITE])[0] == 200  # safe method
    same_origin = [("Origin", "https://app.example"), ("Host", "app.example")]
    assert call(gate, "POST", "/x", [cookie, *same_origin])[0] == 200
    assert call(gate, "PUT", "/x", [cookie, ("Sec-Fetch-Site", "same-origin")])[0] == 200
    assert call(gate, "DELETE", "/x", [cookie, ("Sec-Fetch-Site", "cross-site")])[0] == 403
    double = ("Cookie", f"lc={issuer.token()}; license_csrf=s3cret")
    assert call(gate, "PATCH", "/x", [double, ("X-CSRF-Token", "s3cret")])[0] == 200
    assert call(gate, "PATCH", "/x", [double, ("X-CSRF-Token", "guess")])[0] == 403
    assert call(gate, "POST", "/x", [cookie, ("Origin", "null")])[0] == 403
    bearer = ("Authorization", f"Bearer {issuer.token()}")
    assert call(gate, "POST", "/x", [bearer, *CROSS_SITE])[0] == 200  # not a cookie
    # On an open path the cookie is ignored cross-site: no identity is lent to the app.
    status, _, env = call(gate, "POST", "/public/x", [cookie, *CROSS_SITE])
    assert status == 200 and env[RESULT_KEY].claims is None


# -- request ids ----------------------------------------------------------------------------


def test_wsgi_gate_forwards_the_request_id(issuer: Issuer) -> None:
    echo = EchoWSGI()
    gate = LicenseGate(echo, gate_config(issuer))
    assert wsgi(gate, "GET", "/public/x", [])[0] == 200
    made = echo.last["HTTP_X_REQUEST_ID"]
    assert len(made) == 32 and echo.last["licensechain.request_id"] == made
    # An id the API would echo is kept, allowed or refused.
    assert wsgi(gate, "GET", "/public/x", [("X-Request-ID", "req#1/a")])[0] == 200
    assert echo.last["HTTP_X_REQUEST_ID"] == "req#1/a"
    _, refused, _ = wsgi(gate, "GET", "/premium/x", [("X-Request-ID", "req#1/a")])
    assert refused.headers["x-request-id"] == "req#1/a"
    assert refused.json()["request_id"] == "req#1/a"
    assert wsgi(gate, "GET", "/public/x", [("X-Request-ID", "has space")])[0] == 200
    assert echo.last["HTTP_X_REQUEST_ID"] != "has space"


def test_asgi_gate_forwards_the_request_id(issuer: Issuer) -> None:
    echo = EchoASGI()
    gate = LicenseGateASGI(echo, gate_config(issuer))
    assert asgi(gate, "GET", "/public/x", [])[0] == 200
    made = echo.header("x-request-id")
    assert len(made) == 1 and len(made[0]) == 32
    assert echo.last["licensechain.request_id"] == made[0]
    asgi(gate, "GET", "/public/x", [("X-Request-ID", "req#1/a")])
    assert echo.header("x-request-id") == ["req#1/a"]
    _, refused, _ = asgi(gate, "GET", "/premium/x", [("X-Request-ID", "req#1/a")])
    assert refused.json()["request_id"] == "req#1/a"


# -- the header-size cap counts the same on both -------------------------------------------


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_header_cap_counts_the_same_on_wsgi_and_asgi(issuer: Issuer, extra: int) -> None:
    config = gate_config(issuer, max_header_bytes=200)
    fixed = [("Host", "a.example"), ("Content-Type", "text/plain"), ("X-Pad", "")]
    used = sum(len(n) + len(v) for n, v in fixed)
    pad = "p" * (200 - used + extra)
    headers = [*fixed[:2], ("X-Pad", pad), ("Authorization", "Bearer " + "x" * 500)]
    expected = 431 if extra > 0 else 401
    assert wsgi(LicenseGate(EchoWSGI(), config), "GET", "/x", headers)[0] == expected
    assert asgi(LicenseGateASGI(EchoASGI(), config), "GET", "/x", headers)[0] == expected


# -- 503 ------------------------------------------------------------------------------------


def test_every_503_carries_retry_after(issuer: Issuer) -> None:
    config = gate_config(issuer, denylist_url=f"redis://127.0.0.1:{free_port()}/0")
    token = [("Authorization", f"Bearer {issuer.token()}")]
    gate = LicenseGate(EchoWSGI(), config)
    try:
        status, response, _ = wsgi(gate, "GET", "/x", token)
        assert status == 503 and int(response.headers["retry-after"]) > 0
    finally:
        gate.close()


# -- secrets in repr --------------------------------------------------------------------------


def test_gate_config_repr_hides_storage_passwords(issuer: Issuer) -> None:
    config = GateConfig(
        issuer="https://i.example",
        audience="app",
        jwks=issuer.jwks,
        denylist_url="redis://user:hunter2@127.0.0.1:6379/0",
        ratelimit_storage_url="rediss://:hunter3@redis.example:6380",
    )
    text = repr(config)
    assert "hunter2" not in text and "hunter3" not in text
    assert "redis://user:***@127.0.0.1:6379/0" in text
    assert "rediss://:***@redis.example:6380" in text


def test_the_403_for_a_missing_feature_is_worded_as_in_the_app(issuer: Issuer) -> None:
    token = [("Authorization", f"Bearer {issuer.token(features=())}")]
    _, wsgi_response, _ = wsgi(
        LicenseGate(EchoWSGI(), gate_config(issuer)), "GET", "/premium/x", token
    )
    _, asgi_response, _ = asgi(
        LicenseGateASGI(EchoASGI(), gate_config(issuer)), "GET", "/premium/x", token
    )
    for response in (wsgi_response, asgi_response):
        assert response.status == 403
        assert response.json()["message"] == FEATURE_MISSING_MESSAGE
