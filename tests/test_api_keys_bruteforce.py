"""Failed API-key authentications are limited per client IP (``AuthFailureLimit``).

After ``LICENSECHAIN_API_KEY_FAILURE_LIMIT`` failures (default 20 a minute) every request of
that IP answers 429 with ``Retry-After``, a correct key included; other IPs are not
affected. The trip logs one WARNING with the request id and the IP, never the presented key,
and records one ``security.auth_failures`` change (actor SYSTEM) per window. With Redis the
count is shared by every worker (two apps on one Redis here; each its own process in
production). Each test uses its own random client IPs, so runs never share counters.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from issuer_support import Issuer, close_issuer, error_body, make_issuer

from flask_licensechain.config import Settings
from flask_licensechain.core.errors import ConfigError
from flask_licensechain.store import Actor, Change

BAD_KEY = "lc_live_" + "B" * 43


def random_ip() -> str:
    return "10." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))


def limited_issuer(tmp_path: Path, **options: Any) -> Issuer:
    return make_issuer(
        tmp_path,
        ratelimit_enabled=True,
        ratelimit_per_ip="1000000/second",
        ratelimit_per_key="1000000/second",
        **options,
    )


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = limited_issuer(tmp_path, api_key_failure_limit="5/minute")
    try:
        yield made
    finally:
        close_issuer(made)


def get(issuer: Issuer, key: str, ip: str) -> Any:
    return issuer.client.get(
        "/v1/apps",
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": f"req-{secrets.token_hex(4)}"},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_the_default_is_20_a_minute_and_the_setting_is_checked() -> None:
    assert Settings().api_key_failure_limit == "20/minute"
    with pytest.raises(ConfigError, match="LICENSECHAIN_API_KEY_FAILURE_LIMIT"):
        Settings.from_mapping({"LICENSECHAIN_API_KEY_FAILURE_LIMIT": "lots"})


def test_after_the_limit_even_a_correct_key_gets_429(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[Actor, Change]] = []
    issuer.store.changes.add_listener(lambda _c, actor, change: seen.append((actor, change)))
    attacker, bystander = random_ip(), random_ip()
    caplog.set_level(logging.WARNING, logger="licensechain.auth")
    for _ in range(4):
        error_body(get(issuer, BAD_KEY, attacker), 401, "unauthorized")
    assert get(issuer, issuer.admin_key, attacker).status_code == 200  # under the limit
    tripped = get(issuer, BAD_KEY, attacker)  # the fifth failure uses the window up
    error_body(tripped, 429, "rate_limited")
    assert 1 <= int(tripped.headers["Retry-After"]) <= 61
    refused = get(issuer, issuer.admin_key, attacker)
    error_body(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    for _ in range(3):
        error_body(get(issuer, BAD_KEY, attacker), 429, "rate_limited")
    # Another IP is not affected.
    assert get(issuer, issuer.admin_key, bystander).status_code == 200
    # One WARNING, with the request id and the IP, never the key.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert attacker in line and tripped.headers["X-Request-ID"] in line
    assert BAD_KEY not in caplog.text and BAD_KEY[8:20] not in caplog.text
    # One security.auth_failures change, by SYSTEM, the IP kept as personal data.
    trips = [(a, c) for a, c in seen if c.action == "security.auth_failures"]
    assert len(trips) == 1
    actor, change = trips[0]
    assert actor.kind == "system"
    assert change.personal == {"ip": attacker} and attacker not in str(change.data)


def test_missing_credentials_are_not_failures(issuer: Issuer) -> None:
    ip = random_ip()
    for _ in range(10):
        response = issuer.client.get("/v1/apps", environ_base={"REMOTE_ADDR": ip})
        error_body(response, 401, "unauthorized")
    assert get(issuer, issuer.admin_key, ip).status_code == 200


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer garbage", "Bearer " + "x" * 600])
def test_malformed_credentials_count(issuer: Issuer, header: str) -> None:
    ip = random_ip()
    for _ in range(5):
        issuer.client.get(
            "/v1/apps", headers={"Authorization": header}, environ_base={"REMOTE_ADDR": ip}
        )
    error_body(get(issuer, issuer.admin_key, ip), 429, "rate_limited")


def test_workers_share_the_count_through_redis(tmp_path: Path, redis_url: str) -> None:
    """Two apps on one Redis (as two gunicorn workers are): failures add up."""
    first = limited_issuer(
        tmp_path / "a", api_key_failure_limit="6/minute", ratelimit_storage_url=redis_url
    )
    second = limited_issuer(
        tmp_path / "b", api_key_failure_limit="6/minute", ratelimit_storage_url=redis_url
    )
    try:
        ip = random_ip()
        for issuer in (first, second, first, second, first):
            error_body(get(issuer, BAD_KEY, ip), 401, "unauthorized")
        error_body(get(second, BAD_KEY, ip), 429, "rate_limited")
        error_body(get(first, first.admin_key, ip), 429, "rate_limited")
        error_body(get(second, second.admin_key, ip), 429, "rate_limited")
    finally:
        close_issuer(first)
        close_issuer(second)


def test_without_rate_limits_nothing_is_counted(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path)  # the tests' default: rate limits off
    try:
        ip = random_ip()
        for _ in range(30):
            get(issuer, BAD_KEY, ip)
        assert get(issuer, issuer.admin_key, ip).status_code == 200
    finally:
        close_issuer(issuer)
