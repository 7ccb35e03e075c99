"""Hostile requests and careless configuration against the one gate, on every adapter.

Cookie CSRF (a WebSocket handshake, ``Sec-Fetch-Site`` against a matching ``Origin``, a
default port judged by its scheme), repeated header lines read the same on WSGI and ASGI,
and ``LICENSECHAIN_*`` / ``GateConfig`` values that must not slip through strict parsing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gate_support import JWKSServer, TokenFactory, integrator_app
from licensechain_middleware import GateConfig, LicenseGate, LicenseGateASGI
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

from flask_licensechain.config import Settings
from flask_licensechain.core.errors import ConfigError

Headers = list[tuple[str, str]]


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def cookie_config(issuer: Issuer, **overrides: Any) -> GateConfig:
    return gate_config(issuer, token_sources=("bearer", "cookie"), token_cookie="lc", **overrides)


def wsgi_status(config: GateConfig, method: str, target: str, headers: Headers) -> int:
    return call_wsgi(LicenseGate(EchoWSGI(), config), wsgi_environ(method, target, headers)).status


def asgi_status(config: GateConfig, method: str, target: str, headers: Headers) -> int:
    response = call_asgi(LicenseGateASGI(EchoASGI(), config), asgi_scope(method, target, headers))
    assert response.status is not None
    return int(response.status)


# -- cookie CSRF: WebSocket handshakes ------------------------------------------------------


@pytest.mark.parametrize("extensions", [{}, {"websocket.http.response": {}}])
def test_asgi_cross_site_websocket_with_the_cookie_alone_is_refused(
    issuer: Issuer, extensions: dict[str, Any]
) -> None:
    """Browsers send cookies on a cross-site WebSocket handshake and no CORS applies to it
    (cross-site WebSocket hijacking): it needs the same proof as an unsafe method."""
    cookie = ("Cookie", f"lc={issuer.token()}")
    gate = LicenseGateASGI(EchoASGI(), cookie_config(issuer))
    hostile = [cookie, ("Origin", "https://evil.example"), ("Host", "app.example")]
    scope = asgi_scope("GET", "/ws", hostile, kind="websocket", extensions=extensions)
    messages = [m["type"] for m in call_asgi(gate, scope).messages]
    assert "websocket.accept" not in messages
    if extensions:
        response = call_asgi(
            gate, asgi_scope("GET", "/ws", hostile, kind="websocket", extensions=extensions)
        )
        assert response.status == 403 and response.json()["error"] == "insufficient_scope"
    else:
        assert messages == ["websocket.close"]
    same = [cookie, ("Origin", "https://app.example"), ("Host", "app.example")]
    scope = asgi_scope("GET", "/ws", same, kind="websocket", extensions=extensions)
    assert "websocket.accept" in [m["type"] for m in call_asgi(gate, scope).messages]
    bearer = [("Authorization", f"Bearer {issuer.token()}"), *hostile[1:]]
    scope = asgi_scope("GET", "/ws", bearer, kind="websocket", extensions=extensions)
    assert "websocket.accept" in [m["type"] for m in call_asgi(gate, scope).messages]


def test_wsgi_cross_site_websocket_upgrade_with_the_cookie_alone_is_refused(
    issuer: Issuer,
) -> None:
    cookie = ("Cookie", f"lc={issuer.token()}")
    upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    hostile = [cookie, *upgrade, ("Origin", "https://evil.example"), ("Host", "app.example")]
    assert wsgi_status(cookie_config(issuer), "GET", "/ws", hostile) == 403
    same = [cookie, *upgrade, ("Origin", "https://app.example"), ("Host", "app.example")]
    assert wsgi_status(cookie_config(issuer), "GET", "/ws", same) == 200
    plain = [cookie, ("Origin", "https://evil.example"), ("Host", "app.example")]
    assert wsgi_status(cookie_config(issuer), "GET", "/ws", plain) == 200  # a safe GET


# -- cookie CSRF: what proves same-origin ---------------------------------------------------

#: Origin names the host, but the browser says the request is not same-origin: an
#: ``http://`` page of the same host (schemeful same-site) or a sibling subdomain.
NOT_SAME_ORIGIN = [
    [("Origin", "http://app.example"), ("Sec-Fetch-Site", "cross-site")],
    [("Origin", "https://app.example"), ("Sec-Fetch-Site", "same-site")],
    # An explicit port is the default one only for its own scheme.
    [("Origin", "http://app.example:443")],
    [("Origin", "https://app.example:80")],
]


@pytest.mark.parametrize("proof", NOT_SAME_ORIGIN)
def test_a_matching_host_is_not_enough_when_the_origin_differs(
    issuer: Issuer, proof: Headers
) -> None:
    headers = [("Cookie", f"lc={issuer.token()}"), ("Host", "app.example"), *proof]
    assert wsgi_status(cookie_config(issuer), "POST", "/x", headers) == 403
    assert asgi_status(cookie_config(issuer), "POST", "/x", headers) == 403
    # the legitimate forms still pass
    for ok in (
        [("Origin", "https://app.example"), ("Sec-Fetch-Site", "same-origin")],
        [("Origin", "https://app.example")],
        [("Origin", "https://app.example:443")],
        [("Origin", "http://app.example:80")],
    ):
        good = [("Cookie", f"lc={issuer.token()}"), ("Host", "app.example"), *ok]
        assert wsgi_status(cookie_config(issuer), "POST", "/x", good) == 200, ok
        assert asgi_status(cookie_config(issuer), "POST", "/x", good) == 200, ok


def test_flask_gate_sec_fetch_site_beats_a_matching_origin(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    app = integrator_app(jwks_server, LICENSECHAIN_TOKEN_SOURCES="bearer,cookie")
    client = app.test_client()
    client.set_cookie("license_token", make_gate_token(), domain="app.example")
    base = "https://app.example"
    refused = client.post(
        "/reports/run",
        base_url=base,
        headers={"Origin": "http://app.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert refused.status_code == 403, refused.get_data(as_text=True)
    allowed = client.post(
        "/reports/run", base_url=base, headers={"Origin": base, "Sec-Fetch-Site": "same-origin"}
    )
    assert allowed.status_code == 200, allowed.get_data(as_text=True)


# -- repeated header lines ------------------------------------------------------------------


def _repeated_cases(issuer: Issuer) -> list[tuple[str, dict[str, Any], Headers]]:
    good = issuer.token(features=("export",))
    poor = issuer.token(features=())
    cookie = {"token_sources": ("bearer", "cookie"), "token_cookie": "lc"}
    x_header = {"token_sources": ("x-license-token",)}
    hostile = [("Cookie", f"lc={good}"), ("Host", "app.example")]
    evil = ("Origin", "https://evil.example")
    auth = "Authorization"
    return [
        ("two bearer", {}, [(auth, f"Bearer {good}"), (auth, f"Bearer {poor}")]),
        ("basic, bearer", {}, [(auth, "Basic dTpw"), (auth, f"Bearer {good}")]),
        ("two x-token", x_header, [("X-License-Token", good), ("X-License-Token", poor)]),
        ("two origins", cookie, [*hostile, evil, ("Origin", "https://app.example")]),
        ("two hosts", cookie, [*hostile, evil, ("Host", "evil.example")]),
        ("two fetch sites", cookie, [*hostile, ("Sec-Fetch-Site", "cross-site"),
                                     ("Sec-Fetch-Site", "same-origin")]),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(6))
def test_repeated_header_lines_read_the_same_on_wsgi_and_asgi(issuer: Issuer, case: int) -> None:
    """WSGI servers fold repeated lines into one comma-joined value (RFC 9110 section 5.3);
    the ASGI gate must read the same value, not the first or the last line."""
    name, overrides, headers = _repeated_cases(issuer)[case]
    config = gate_config(issuer, **overrides)
    wsgi = wsgi_status(config, "POST", "/premium/x", headers)
    asgi = asgi_status(config, "POST", "/premium/x", headers)
    assert wsgi == asgi, name
    assert asgi in (401, 403), name  # ambiguous: never let through


def test_asgi_reads_the_license_cookie_from_any_cookie_line(issuer: Issuer) -> None:
    """HTTP/2 may split ``Cookie`` into several lines (RFC 9113 section 8.2.3)."""
    headers = [("Cookie", "xlc=1"), ("Cookie", f"lc={issuer.token()}")]
    assert asgi_status(cookie_config(issuer), "GET", "/x", headers) == 200


# -- configuration that must not slip through ---------------------------------------------


@pytest.mark.parametrize(
    "key", ["LICENSECHAIN_Denylist_Url", "LICENSECHAIN_denylist_url", "LICENSECHAIN_Audience"]
)
def test_a_key_in_another_case_is_not_silently_ignored(key: str) -> None:
    """Only the upper-case key is read: ``app.config`` keys are case-sensitive."""
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({key: "redis://127.0.0.1:6379/0"})
    assert key in str(info.value) and "LICENSECHAIN_" + key[13:].upper() in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LICENSECHAIN_JWKS_CACHE_TTL", "nan"),
        ("LICENSECHAIN_JWKS_CACHE_TTL", "inf"),
        ("LICENSECHAIN_AUTHORITATIVE_CACHE_TTL", "inf"),
        ("LICENSECHAIN_KEY_REFRESH_INTERVAL", "nan"),
        ("LICENSECHAIN_KEY_REFRESH_INTERVAL", float("inf")),
        ("LICENSECHAIN_LEEWAY", "\u0663\u0660"),  # Arabic-Indic "30"
        ("LICENSECHAIN_MAX_TOKEN_BYTES", "\uff18\uff11\uff19\uff12"),  # full-width "8192"
        ("LICENSECHAIN_MAX_TOKEN_BYTES", "8_192"),
        ("LICENSECHAIN_KEY_SIZE", "1024"),
        ("LICENSECHAIN_KEY_SIZE", -1),
    ],
)
def test_numbers_that_slip_through_python_parsing_are_refused(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({key: value})
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jwks_cache_ttl", float("nan")),
        ("jwks_cache_ttl", float("inf")),
        ("jwks_timeout", float("nan")),
        ("max_header_bytes", float("inf")),
        ("verified_cache_size", float("nan")),
    ],
)
def test_gate_config_refuses_non_finite_numbers(issuer: Issuer, name: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        gate_config(issuer, **{name: value})
    assert name in str(info.value)


# -- the client address and the request id --------------------------------------------------


@pytest.mark.parametrize("adapter", ["wsgi", "asgi"])
def test_a_long_forwarded_for_still_names_the_client(issuer: Issuer, adapter: str) -> None:
    """The trusted proxy appends the real client on the right; a client that pads the left
    must not fall back to the proxy's own address (a rate-limit bucket of its choosing)."""
    config = gate_config(issuer, trusted_proxies=("127.0.0.1/32",))
    padded = ", ".join(["9.9.9.9"] * 400) + ", 1.1.1.1"
    headers = [("X-Forwarded-For", padded)]
    if adapter == "wsgi":
        environ = wsgi_environ("GET", "/public/x", headers)
        call_wsgi(LicenseGate(EchoWSGI(), config), environ)
        result = environ["licensechain.result"]
    else:
        scope = asgi_scope("GET", "/public/x", headers)
        call_asgi(LicenseGateASGI(EchoASGI(), config), scope)
        result = scope["licensechain.result"]
    assert result.client_ip == "1.1.1.1"


def test_asgi_drops_the_underscore_twin_of_a_configured_request_id_header(
    issuer: Issuer,
) -> None:
    echo = EchoASGI()
    gate = LicenseGateASGI(echo, gate_config(issuer, request_id_header="X-Correlation-ID"))
    headers = [("X-Correlation-ID", "req-1"), ("X_Correlation_ID", "forged")]
    assert call_asgi(gate, asgi_scope("GET", "/public/x", headers)).status == 200
    names = [k.decode().lower() for k, _ in echo.last["headers"]]
    assert "x_correlation_id" not in names
    assert echo.header("x-correlation-id") == ["req-1"]


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("LICENSECHAIN_DENYLST_URL", "LICENSECHAIN_DENYLIST_URL"),
        ("LICENSECHAIN_Denylist_Url", "LICENSECHAIN_DENYLIST_URL"),
        ("LICENSECHAIN_AUDIENCES", "LICENSECHAIN_AUDIENCE"),
    ],
)
def test_gateway_warns_of_a_misspelt_gate_variable(
    issuer: Issuer, tmp_path: Path, caplog: pytest.LogCaptureFixture, variable: str, meant: str
) -> None:
    """As the Flask extension does with the environment: a typo must not silently run the
    gateway without, say, its denylist."""
    import json
    import logging

    from licensechain_middleware.gateway.config import config_from_document

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks))
    document = {
        "issuer": "https://i.example",
        "audience": "app",
        "jwks_file": str(jwks),
        "gateway": {"upstream": "http://127.0.0.1:9"},
    }
    with caplog.at_level(logging.WARNING):
        config_from_document(document, {variable: "redis://127.0.0.1:6379/0"})
    assert any(variable in r.getMessage() and meant in r.getMessage() for r in caplog.records)


def test_a_gate_without_a_denylist_says_so_at_start(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """Revocation is switched off by leaving ``denylist_url`` out: never silently."""
    import logging

    with caplog.at_level(logging.WARNING, logger="licensechain.gate"):
        LicenseGate(EchoWSGI(), gate_config(issuer))
    assert any("denylist_url" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="licensechain.gate"):
        LicenseGate(EchoWSGI(), gate_config(issuer, denylist_url="memory://"))
    assert not any("denylist_url" in r.getMessage() for r in caplog.records)


# -- what counts as a CORS preflight ---------------------------------------------------------


def test_flask_gate_passes_only_a_real_preflight(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    """A view that also answers OPTIONS must not serve a bare OPTIONS without a license:
    only a CORS preflight (OPTIONS with ``Origin`` and ``Access-Control-Request-Method``)
    passes unchecked, as on the WSGI and ASGI gates."""
    client = integrator_app(jwks_server).test_client()
    bare = client.options("/preflight")
    assert bare.status_code == 401, bare.get_data(as_text=True)
    assert bare.get_json()["error"] == "unauthorized"
    half = client.options("/preflight", headers={"Origin": "https://app.example"})
    assert half.status_code == 401
    preflight = client.options(
        "/preflight",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    licensed = client.options(
        "/preflight", headers={"Authorization": f"Bearer {make_gate_token(features=('export',))}"}
    )
    assert licensed.status_code == 200 and licensed.get_json()["license"] is True


@pytest.mark.parametrize("name", ["body_timeout", "header_timeout", "read_timeout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_gateway_timeouts_must_be_finite(name: str, value: float) -> None:
    """A ``nan`` deadline is never reached: slow bodies would hold a worker for ever."""
    from licensechain_middleware.gateway.settings import GatewayConfigError, GatewaySettings

    with pytest.raises(GatewayConfigError, match=name):
        GatewaySettings.from_table({"upstream": "http://127.0.0.1:9", name: value}, {})
