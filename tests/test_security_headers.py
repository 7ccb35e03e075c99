"""Security headers on every response of the license server (monitoring/headers.py).

- Every kind of response carries nosniff, no-referrer and DENY: a public API answer, an
  admin error (401), an unknown path, and a route of the host app itself (the hook is on
  the app, not on the API blueprint, so the console will get them too).
- A header a view set itself (its own framing policy, a CSP) is kept, not replaced.
- HSTS only over HTTPS: a request over https, or one that came over https through a proxy
  once ProxyFix trusts it; not over plain http, nor for a forged X-Forwarded-Proto without
  ProxyFix; on every response with LICENSECHAIN_HSTS.
- LICENSECHAIN_SECURITY_HEADERS=false turns them off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response
from gate_support import issuer_app_with
from werkzeug.middleware.proxy_fix import ProxyFix

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
HSTS = "Strict-Transport-Security"


def _app(tmp_path: Path, **config: Any) -> Flask:
    app = issuer_app_with(tmp_path, gated=False, **config)

    @app.get("/host/page")
    def host_page() -> str:
        return "<p>the host app's own page</p>"

    @app.get("/host/framed")
    def framed() -> Response:
        response = Response("<p>framable</p>")
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'self'"
        return response

    return app


def _assert_headers(response: Any) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get_all(name) == [value], (name, response.headers)


def test_every_kind_of_response_carries_the_headers(tmp_path: Path) -> None:
    client = _app(tmp_path).test_client()
    responses = [
        client.post("/v1/licenses/verify", json={"key": "LC-AAAAAA-AAAAAA-AAAAAA"}),
        client.get("/v1/licenses/jwks"),
        client.get("/v1/apps"),  # 401: no API key
        client.get("/v1/no/such/path"),
        client.get("/elsewhere/unknown"),
        client.get("/host/page"),
        client.get("/health"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 401, 404, 404, 200, 200]
    for response in responses:
        _assert_headers(response)
        assert HSTS not in response.headers  # plain http


def test_a_header_the_view_set_is_kept(tmp_path: Path) -> None:
    response = _app(tmp_path).test_client().get("/host/framed")
    assert response.headers.get_all("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_over_https(tmp_path: Path) -> None:
    client = _app(tmp_path).test_client()
    response = client.get("/v1/licenses/jwks", base_url="https://licenses.example.test")
    assert response.headers[HSTS] == "max-age=31536000; includeSubDomains"
    _assert_headers(response)


def test_hsts_behind_a_trusted_proxy_only(tmp_path: Path) -> None:
    app = _app(tmp_path)
    forged = app.test_client().get("/host/page", headers={"X-Forwarded-Proto": "https"})
    assert HSTS not in forged.headers  # no ProxyFix: the header is the client's word
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)  # type: ignore[method-assign]
    proxied = app.test_client().get("/host/page", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers[HSTS].startswith("max-age=")


def test_hsts_when_configured(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_HSTS=True, LICENSECHAIN_HSTS_MAX_AGE=600)
    response = app.test_client().get("/host/page")
    assert response.headers[HSTS] == "max-age=600; includeSubDomains"


def test_a_view_own_hsts_is_kept(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_HSTS=True)

    @app.get("/host/own-hsts")
    def own() -> Response:
        response = Response("x")
        response.headers[HSTS] = "max-age=5"
        return response

    assert app.test_client().get("/host/own-hsts").headers.get_all(HSTS) == ["max-age=5"]


def test_switched_off(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_SECURITY_HEADERS=False)
    response = app.test_client().get("/host/page", base_url="https://x.example")
    for name in [*EXPECTED, HSTS]:
        assert name not in response.headers


@pytest.mark.parametrize("value", ["-1", "0", "soon"])
def test_bad_max_age_is_a_config_error(tmp_path: Path, value: str) -> None:
    from flask_licensechain.core.errors import ConfigError

    with pytest.raises(ConfigError, match="LICENSECHAIN_HSTS_MAX_AGE"):
        _app(tmp_path, LICENSECHAIN_HSTS_MAX_AGE=value)
