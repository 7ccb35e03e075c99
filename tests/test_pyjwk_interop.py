"""Tokens from a real HTTP server verify with plain PyJWT: ``jwt.PyJWKClient`` pointed at the
JWKS URL the server advertises, and ``jwt.decode`` with RS256, the app id as audience and
the issuer. Nothing of this package is used on the verifying side."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import free_port
from issuer_support import Issuer, close_issuer, make_issuer
from werkzeug.serving import BaseWSGIServer, make_server


@dataclass
class Served:
    issuer: Issuer
    base_url: str

    @property
    def api(self) -> str:
        return self.base_url + "/v1"

    def verify(self, key: str, **body: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.api}/licenses/verify", json={"key": key, **body})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert answer["valid"] is True, answer
        return answer


@pytest.fixture(params=["default-issuer", "configured-issuer"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """The issuer app behind Werkzeug's HTTP server on a free loopback port."""
    port = free_port()
    options = {}
    if request.param == "configured-issuer":
        options["issuer"] = "https://licenses.example.test/v1"
    issuer = make_issuer(tmp_path, **options)
    server: BaseWSGIServer = make_server("127.0.0.1", port, issuer.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(issuer, f"http://127.0.0.1:{port}")
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        close_issuer(issuer)


def pyjwt_decode(token: str, jwks_url: str, audience: str, issuer: str) -> dict[str, Any]:
    signing_key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]},
    )
    return claims


def test_verify_token_decodes_with_plain_pyjwt(served: Served) -> None:
    lic = served.issuer.new_license(features=["export", "sync"], plan="pro")
    answer = served.verify(lic.key, hwuid="box-1")
    jwks_url = answer["license_jwks_uri"]
    assert jwks_url == f"{served.api}/licenses/jwks"
    expected_issuer = served.issuer.state.settings.issuer or served.api

    claims = pyjwt_decode(answer["license_token"], jwks_url, lic.app_id, expected_issuer)

    assert claims["sub"] == lic.id == answer["id"]
    assert claims["aud"] == lic.app_id
    assert claims["iss"] == expected_issuer
    assert claims["token_use"] == "licensechain_license_v1"
    assert claims["features"] == ["export", "sync"]
    assert (claims["plan"], claims["hw_bound"], claims["lc_vt"]) == ("pro", True, "advanced")
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 3600  # advanced tier


def test_pyjwt_refuses_wrong_audience_issuer_and_tampering(served: Served) -> None:
    lic = served.issuer.new_license()
    answer = served.verify(lic.key)
    token, jwks_url = answer["license_token"], answer["license_jwks_uri"]
    issuer = served.issuer.state.settings.issuer or served.api
    with pytest.raises(jwt.InvalidAudienceError):
        pyjwt_decode(token, jwks_url, "app_someone_else", issuer)
    with pytest.raises(jwt.InvalidIssuerError):
        pyjwt_decode(token, jwks_url, lic.app_id, "https://evil.example/v1")
    header, payload, signature = token.split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        pyjwt_decode(f"{header}.{payload}.{flipped}", jwks_url, lic.app_id, issuer)


def test_tokens_from_before_and_after_a_rotation_both_decode(served: Served) -> None:
    lic = served.issuer.new_license()
    issuer = served.issuer.state.settings.issuer or served.api
    before = served.verify(lic.key)["license_token"]
    rotated = httpx.post(f"{served.api}/signing-keys/rotate", headers=served.issuer.auth())
    assert rotated.status_code == 200, rotated.text
    after_answer = served.verify(lic.key)
    after = after_answer["license_token"]
    assert jwt.get_unverified_header(after)["kid"] == rotated.json()["kid"]
    assert jwt.get_unverified_header(before)["kid"] == rotated.json()["previousKid"]
    for token in (before, after):
        claims = pyjwt_decode(token, after_answer["license_jwks_uri"], lic.app_id, issuer)
        assert claims["sub"] == lic.id
