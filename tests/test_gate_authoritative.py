"""Server-authoritative mode: the gate also asks for the license's live status.

Integrators ask the issuer's introspect endpoint (a real server on loopback); the
issuer asks its own store. Both fail closed.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from conftest import free_port
from flask import Flask
from flask.testing import FlaskClient
from gate_support import (
    INVALID_TOKEN,
    JWKSServer,
    TokenFactory,
    assert_refused,
    bearer,
    integrator_app,
    issue_token,
    issuer_app_with,
)

from flask_licensechain import get_state


def test_authoritative_mode_asks_introspect_and_caches(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    client = integrator_app(
        jwks_server, LICENSECHAIN_AUTHORITATIVE=True, LICENSECHAIN_AUTHORITATIVE_CACHE_TTL=60
    ).test_client()
    token = make_gate_token()
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    jwks_server.introspect_answer = (200, {"active": True, "jti": jti, "status": "ACTIVE"})
    for _ in range(3):
        assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    assert jwks_server.introspect_calls == [{"license_token": token}]  # one call, then cached


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ((200, {"active": False, "reason": "license_suspended"}), 401),
        ((200, {"active": False, "reason": "token_revoked"}), 401),
        ((200, {"active": True, "status": "SUSPENDED"}), 401),
        ((500, {"error": "internal_error"}), 503),
        ((200, ["not", "an", "object"]), 503),
        ((429, {"error": "rate_limited"}), 503),
    ],
)
def test_authoritative_mode_refuses_dead_licenses_and_fails_closed(
    jwks_server: JWKSServer, make_gate_token: TokenFactory, answer: tuple[int, Any], status: int
) -> None:
    client = integrator_app(jwks_server, LICENSECHAIN_AUTHORITATIVE=True).test_client()
    jwks_server.introspect_answer = answer
    response = client.get("/reports/export", headers=bearer(make_gate_token()))
    if status == 401:
        assert_refused(response, 401, INVALID_TOKEN, "unauthorized")
    else:
        assert_refused(response, 503, None, "unavailable")


def test_authoritative_mode_with_introspect_down_is_503(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    client = integrator_app(
        jwks_server,
        LICENSECHAIN_AUTHORITATIVE=True,
        LICENSECHAIN_INTROSPECT_URL=f"http://127.0.0.1:{free_port()}/v1/licenses/introspect",
    ).test_client()
    response = client.get("/reports/export", headers=bearer(make_gate_token()))
    assert_refused(response, 503, None, "unavailable")


def test_authoritative_off_never_calls_introspect(
    gate_client: FlaskClient, jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    assert gate_client.get("/reports/export", headers=bearer(make_gate_token())).status_code == 200
    assert jwks_server.introspect_calls == []


def test_issuer_authoritative_mode_reads_the_live_status(tmp_path: Any) -> None:
    app = issuer_app_with(
        tmp_path,
        LICENSECHAIN_AUTHORITATIVE=True,
        LICENSECHAIN_AUTHORITATIVE_CACHE_TTL=0,
        LICENSECHAIN_VERIFY_AUDIENCE=False,
    )
    lic, token = issue_token(app)
    client = app.test_client()
    store = get_state(app).store
    assert store is not None
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    # Changed in the store behind the API's back (no denylist entry): only live status sees it.
    store.licenses.set_status(lic.id, "SUSPENDED")
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    store.licenses.set_status(lic.id, "ACTIVE")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    store.licenses.set_status(lic.id, "REVOKED")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 401


def test_issuer_gate_follows_a_suspension_written_straight_to_the_store(
    issuer_app: Flask,
) -> None:
    # Written by another process or the CLI: the store records the block, and this
    # process's denylist reads it within one poll interval, without authoritative mode.
    lic, token = issue_token(issuer_app)
    store = get_state(issuer_app).store
    assert store is not None
    client = issuer_app.test_client()
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    store.licenses.set_status(lic.id, "SUSPENDED")
    deadline = time.monotonic() + 10
    while client.get("/reports/export", headers=bearer(token)).status_code == 200:
        assert time.monotonic() < deadline, "the suspension never reached the gate"
        time.sleep(0.05)
    response = client.get("/reports/export", headers=bearer(token))
    assert_refused(response, 401, INVALID_TOKEN, "unauthorized")


def test_issuer_authoritative_mode_fails_closed_when_the_store_fails(tmp_path: Any) -> None:
    import sqlalchemy.exc

    app = issuer_app_with(
        tmp_path, LICENSECHAIN_AUTHORITATIVE=True, LICENSECHAIN_VERIFY_AUDIENCE=False
    )
    _, token = issue_token(app)
    store = get_state(app).store
    assert store is not None

    def broken(license_id: str) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("database is gone"))

    store.licenses.get = broken  # type: ignore[method-assign]
    response = app.test_client().get("/reports/export", headers=bearer(token))
    assert_refused(response, 503, None, "unavailable")
