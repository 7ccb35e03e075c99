"""Interop: tokens from our server verify with Node's ``jose`` and with PyJWT's ``PyJWKClient``.

LicenseChain's Node SDK verifies with jose's ``createRemoteJWKSet`` + ``jwtVerify``; this test
does exactly that against a real issuer process over HTTP. ``jose`` is installed from npm
(pinned in tests/interop/package.json) into tests/interop/node_modules when missing. The test
skips when ``node`` is absent, and fails instead under ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import free_port, require_service
from interop.issuer_server import IssuerServer, issuer_server

INTEROP = Path(__file__).resolve().parent / "interop"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        require_service("node is not installed")
    assert path is not None
    if not (INTEROP / "node_modules" / "jose" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            require_service("npm is not installed")
        assert npm is not None
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP,
            check=True,
            timeout=300,
        )
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerServer]:
    with issuer_server(tmp_path_factory.mktemp("jose_issuer"), free_port()) as running:
        yield running


def jose_verify(node: str, server: IssuerServer, cases: list[dict[str, Any]]) -> list[Any]:
    done = subprocess.run(
        [node, str(INTEROP / "verify_jose.mjs"), server.jwks_url, server.issuer],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=INTEROP,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: list[Any] = json.loads(done.stdout)
    assert len(results) == len(cases)
    return results


def tampered(token: str, **changes: Any) -> str:
    """The same signature over a payload with ``changes``: must fail verification."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_jose_verifies_our_tokens_against_the_served_jwks(node: str, server: IssuerServer) -> None:
    lic = server.new_license(plan="pro", features=["export", "audit"])
    answer = server.verify(lic.key, hwuid="a" * 64)
    token = answer["license_token"]
    other_token = server.verify(server.new_license().key)["license_token"]
    jwks = httpx.get(server.jwks_url).json()

    results = jose_verify(
        node,
        server,
        [
            {"token": token, "audience": lic.app_id},
            {
                "token": tampered(token, features=["export", "audit", "admin"]),
                "audience": lic.app_id,
            },
            {"token": token, "audience": "some_other_app"},
            {"token": other_token, "audience": lic.app_id},
        ],
    )

    ok, forged, wrong_audience, other_app = results
    assert ok["ok"] is True, ok
    assert ok["header"]["alg"] == "RS256"
    assert ok["header"]["kid"] in {k["kid"] for k in jwks["keys"]}
    payload = ok["payload"]
    assert payload == jwt.decode(token, options={"verify_signature": False})
    assert payload["sub"] == lic.id and payload["aud"] == lic.app_id
    assert payload["iss"] == server.issuer
    assert payload["token_use"] == "licensechain_license_v1"
    assert payload["features"] == ["export", "audit"] and payload["hw_bound"] is True
    assert forged == {**forged, "ok": False, "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}
    assert wrong_audience["ok"] is False
    assert wrong_audience["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"
    assert other_app["ok"] is False and other_app["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"


def test_jose_verifies_tokens_of_the_old_and_new_key_after_rotation(
    node: str, server: IssuerServer
) -> None:
    lic = server.new_license(features=["export"])
    before = server.verify(lic.key)["license_token"]
    rotated = httpx.post(f"{server.issuer}/signing-keys/rotate", headers=server.admin(), json={})
    assert rotated.status_code == 200, rotated.text
    after = server.verify(lic.key)["license_token"]
    kid_before = jwt.get_unverified_header(before)["kid"]
    kid_after = jwt.get_unverified_header(after)["kid"]
    assert kid_before != kid_after

    results = jose_verify(
        node,
        server,
        [{"token": before, "audience": lic.app_id}, {"token": after, "audience": lic.app_id}],
    )
    assert [r["ok"] for r in results] == [True, True], results
    assert [r["header"]["kid"] for r in results] == [kid_before, kid_after]


def test_pyjwt_jwks_client_verifies_our_tokens(server: IssuerServer) -> None:
    lic = server.new_license(plan="pro", features=["export"])
    token = server.verify(lic.key)["license_token"]
    client = jwt.PyJWKClient(server.jwks_url, cache_keys=True)
    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=lic.app_id,
        issuer=server.issuer,
        options={"require": ["exp", "iat", "sub", "jti"]},
    )
    assert claims["sub"] == lic.id and claims["features"] == ["export"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            tampered(token, plan="enterprise"),
            signing_key.key,
            algorithms=["RS256"],
            audience=lic.app_id,
            issuer=server.issuer,
        )
