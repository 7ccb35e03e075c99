"""Shared fixtures: the real Redis and PostgreSQL servers, and throwaway keys.

Outside CI a test that needs a missing server is skipped with the reason; under
``CI=true`` it fails instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gate_support import (
    APP_ID,
    ISSUER,
    JWKSServer,
    TokenFactory,
    integrator_app,
    issuer_app_with,
    token_factory,
)

from flask_licensechain.core.denylist.redis import RedisDenylist
from flask_licensechain.core.keys import SigningKey

REDIS_URL = os.environ.get("LICENSECHAIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "LICENSECHAIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: services are required)")
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server. Tests must not FLUSHDB: use unique keys.

    Its default denylist namespace is declared complete (Redis as the only record), as a
    deployment without a store does: gates trust a Redis denylist only once it is.
    """
    if not _reachable("127.0.0.1", 6379):
        require_service("Redis is not running on 127.0.0.1:6379")
    shared = RedisDenylist.from_uri(REDIS_URL)
    shared.mark_complete()
    shared.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    if not _reachable("127.0.0.1", 5432):
        require_service("PostgreSQL is not running on 127.0.0.1:5432")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = "lc_test_" + secrets.token_hex(6)
    admin_url = postgres_server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = postgres_server_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the in-app gate (helpers in gate_support.py) -------------------------------------------


@pytest.fixture(scope="session")
def gate_key() -> SigningKey:
    """The issuer key the gate's JWKS server publishes."""
    return SigningKey.generate()


@pytest.fixture(scope="session")
def stranger_key() -> SigningKey:
    """A key nobody trusts."""
    return SigningKey.generate()


@pytest.fixture
def jwks_server(gate_key: SigningKey) -> Iterator[JWKSServer]:
    """A real JWKS (and introspect) server on loopback."""
    with JWKSServer({"keys": [gate_key.jwk()]}) as server:
        yield server


@pytest.fixture
def make_gate_token(gate_key: SigningKey) -> TokenFactory:
    """Tokens for ``APP_ID`` from ``ISSUER``, signed with ``gate_key``."""
    return token_factory(gate_key, ISSUER, APP_ID)


@pytest.fixture
def gate_client(jwks_server: JWKSServer) -> FlaskClient:
    """A test client of an integrator app with the gated routes."""
    return integrator_app(jwks_server).test_client()


@pytest.fixture
def issuer_app(tmp_path: Any) -> Flask:
    """An issuer app (store, keys, /v1 API) with the gated routes, audience check off."""
    return issuer_app_with(tmp_path, LICENSECHAIN_VERIFY_AUDIENCE=False)
