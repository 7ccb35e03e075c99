"""Rate limits of the public endpoints (the ``limits`` library): per client IP, per license key."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from issuer_support import Issuer, close_issuer, error_body, make_issuer


def _ip() -> str:
    """A fresh client address per test: the Redis counters are shared with other runs."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def _verify(issuer: Issuer, body: dict[str, Any], ip: str, path: str = "verify") -> Any:
    return issuer.client.post(f"/v1/licenses/{path}", json=body, environ_base={"REMOTE_ADDR": ip})


@pytest.fixture(params=["memory", "redis"])
def limited(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Issuer]:
    options: dict[str, Any] = {
        "ratelimit_enabled": True,
        "ratelimit_per_ip": "3/minute",
        "ratelimit_per_key": "5/minute",
    }
    if request.param == "redis":
        options["ratelimit_storage_url"] = request.getfixturevalue("redis_url")
    made = make_issuer(tmp_path, **options)
    try:
        yield made
    finally:
        close_issuer(made)


def test_per_ip_limit_gives_429_with_headers_and_contract_body(limited: Issuer) -> None:
    ip = _ip()
    lic = limited.new_license()
    for remaining in (2, 1, 0):
        response = _verify(limited, {"key": lic.key}, ip)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
        assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
        assert "Retry-After" not in response.headers  # only a 429 says when to retry
    limited_response = _verify(limited, {"key": lic.key}, ip)
    body = error_body(limited_response, 429, "rate_limited")
    assert body["message"] == "Too many requests."
    retry_after = int(limited_response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert limited_response.headers["X-RateLimit-Limit"] == "3"
    assert limited_response.headers["X-RateLimit-Remaining"] == "0"
    # another client is not affected
    assert _verify(limited, {"key": lic.key}, _ip()).status_code == 200


def test_per_ip_limit_covers_jwks_and_introspect(limited: Issuer) -> None:
    ip = _ip()
    for _ in range(3):
        assert (
            limited.client.get("/v1/licenses/jwks", environ_base={"REMOTE_ADDR": ip}).status_code
            == 200
        )
    response = limited.client.get("/v1/licenses/jwks", environ_base={"REMOTE_ADDR": ip})
    error_body(response, 429, "rate_limited")
    assert "Retry-After" in response.headers
    for _ in range(3):
        assert _verify(limited, {"token": "x"}, ip, "introspect").status_code == 200
    error_body(_verify(limited, {"token": "x"}, ip, "introspect"), 429, "rate_limited")


def test_per_key_limit_across_addresses_and_aliases(limited: Issuer) -> None:
    lic = limited.new_license()
    other = limited.new_license()
    aliases = ["key", "licenseKey", "license_key", "key", "licenseKey"]
    for alias in aliases:  # five different clients, one key, spelled five ways
        assert _verify(limited, {alias: lic.key}, _ip()).status_code == 200
    # validate-hardware shares the key's budget; the key's case does not open a new one
    response = _verify(limited, {"key": lic.key.lower(), "hwuid": "m"}, _ip(), "validate-hardware")
    error_body(response, 429, "rate_limited")
    assert "Retry-After" in response.headers
    assert _verify(limited, {"key": other.key}, _ip()).status_code == 200


def test_bodies_without_a_key_are_limited_per_ip_only(limited: Issuer) -> None:
    for _ in range(6):  # more than the per-key limit, each from its own address
        error_body(_verify(limited, {}, _ip()), 400, "invalid_request")


def test_health_is_not_rate_limited(limited: Issuer) -> None:
    ip = _ip()
    for _ in range(6):
        assert limited.client.get("/v1/health", environ_base={"REMOTE_ADDR": ip}).status_code == 200


def test_admin_endpoints_are_not_rate_limited(limited: Issuer) -> None:
    ip = _ip()
    for _ in range(6):
        response = limited.client.get(
            "/v1/apps", headers=limited.auth(), environ_base={"REMOTE_ADDR": ip}
        )
        assert response.status_code == 200


def test_disabled_limits(tmp_path: Path) -> None:
    made = make_issuer(tmp_path, ratelimit_enabled=False, ratelimit_per_ip="1/minute")
    try:
        lic = made.new_license()
        for _ in range(3):
            response = _verify(made, {"key": lic.key}, "10.0.0.1")
            assert response.status_code == 200
            assert "X-RateLimit-Limit" not in response.headers
    finally:
        close_issuer(made)


def test_redis_counts_are_shared_between_apps(tmp_path: Path, redis_url: str) -> None:
    """Two issuer apps on one Redis (as two workers would be) share one budget."""
    options = {
        "ratelimit_enabled": True,
        "ratelimit_per_ip": "2/minute",
        "ratelimit_storage_url": redis_url,
    }
    first = make_issuer(tmp_path / "a", **options)
    second = make_issuer(tmp_path / "b", **options)
    try:
        ip = _ip()
        assert _verify(first, {"key": "LC-X"}, ip).status_code == 200
        assert _verify(second, {"key": "LC-X"}, ip).status_code == 200
        error_body(_verify(first, {"key": "LC-X"}, ip), 429, "rate_limited")
        error_body(_verify(second, {"key": "LC-X"}, ip), 429, "rate_limited")
    finally:
        close_issuer(first)
        close_issuer(second)


def test_dead_rate_limit_store_fails_open_by_default(tmp_path: Path) -> None:
    made = make_issuer(
        tmp_path,
        ratelimit_enabled=True,
        ratelimit_per_ip="2/minute",
        ratelimit_storage_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    try:
        lic = made.new_license()
        ip = _ip()
        statuses = [_verify(made, {"key": lic.key}, ip).status_code for _ in range(3)]
        # falls back to in-process limits rather than failing or letting everything through
        assert statuses == [200, 200, 429]
    finally:
        close_issuer(made)


def test_dead_rate_limit_store_fails_closed_when_asked(tmp_path: Path) -> None:
    made = make_issuer(
        tmp_path,
        ratelimit_enabled=True,
        ratelimit_fail_open=False,
        ratelimit_storage_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    try:
        lic = made.new_license()
        error_body(_verify(made, {"key": lic.key}, _ip()), 503, "unavailable")
        health = made.client.get("/v1/health")
        assert health.status_code == 503
        assert health.get_json()["failing"] == ["ratelimit"]
    finally:
        close_issuer(made)


def test_refused_requests_count_and_carry_the_headers(limited: Issuer) -> None:
    ip = _ip()
    response = _verify(limited, {"key": 5}, ip)  # a 400 still costs the client a request
    error_body(response, 400, "invalid_request")
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert _verify(limited, {}, ip).headers["X-RateLimit-Remaining"] == "1"
