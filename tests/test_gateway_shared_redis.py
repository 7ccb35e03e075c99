"""Two gateway processes (gunicorn, two workers each) share one Redis: together they
enforce one rate limit, and one revocation reaches both at once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from gateway_support.gateway_config import write_config
from gateway_support.processes import Server, gateway_server, upstream_server
from gateway_support.tokens import TestIssuer

from flask_licensechain.core.denylist import denylist_from_uri

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def refused_soon(url: str, headers: dict[str, str], within: float = 3.0) -> httpx.Response:
    """The first 401 for ``url`` within ``within`` seconds (fails when it never comes)."""
    deadline = time.monotonic() + within
    while True:
        response = httpx.get(url, headers=headers)
        if response.status_code == 401 or time.monotonic() > deadline:
            assert response.status_code == 401, response.text
            return response
        time.sleep(0.02)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def gateways(
    redis_url: str, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    directory = tmp_path_factory.mktemp("gw")
    with upstream_server() as upstream:
        # One file for both: same rules, same Redis, same rate-limit key prefix.
        config = write_config(
            directory,
            upstream=upstream.url,
            jwks_file=issuer.jwks_file,
            gate=f'denylist_url = "{redis_url}"\nratelimit_storage_url = "{redis_url}"',
        )
        with ExitStack() as stack:
            first = stack.enter_context(gateway_server(config, workers=2))
            second = stack.enter_context(gateway_server(config, workers=2))
            yield first, second


def test_both_gateways_are_ready_with_redis(gateways: tuple[Server, Server]) -> None:
    for gateway in gateways:
        assert httpx.get(f"{gateway.url}/_licensechain/ready").json() == {"status": "ready"}


def test_one_rate_limit_across_both_gateways(
    gateways: tuple[Server, Server], issuer: TestIssuer
) -> None:
    token = issuer.token(sub=f"lic_rl_{uuid.uuid4().hex}")
    auth = {"Authorization": f"Bearer {token}"}
    statuses = []
    for i in range(8):  # alternate: neither gateway alone sees more than 4
        gateway = gateways[i % 2]
        statuses.append(httpx.get(f"{gateway.url}/limited/x", headers=auth))
    codes = [r.status_code for r in statuses]
    assert codes.count(200) == 5, codes  # the rule says 5/minute, for both together
    assert codes.count(429) == 3, codes
    limited = next(r for r in statuses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    # Another license has its own budget.
    other = {"Authorization": f"Bearer {issuer.token(sub=f'lic_rl_{uuid.uuid4().hex}')}"}
    assert httpx.get(f"{gateways[1].url}/limited/x", headers=other).status_code == 200


def test_one_revocation_reaches_both_gateways(
    gateways: tuple[Server, Server], issuer: TestIssuer, redis_url: str
) -> None:
    sub = f"lic_rev_{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {issuer.token(sub=sub, features=('premium',))}"}
    for gateway in gateways:  # warm: both verified (and cached) the token
        for _ in range(3):
            assert httpx.get(f"{gateway.url}/premium/x", headers=auth).status_code == 200
    denylist = denylist_from_uri(redis_url)
    try:
        denylist.revoke_sub(sub, ttl=120)
        for gateway in gateways:
            # Gateways mirror the denylist over pub/sub: give the announcement a moment.
            first = refused_soon(f"{gateway.url}/premium/x", auth)
            assert 'error="invalid_token"' in first.headers["www-authenticate"]
            for _ in range(4):  # then every worker of each gateway refuses
                assert httpx.get(f"{gateway.url}/premium/x", headers=auth).status_code == 401
        metrics = httpx.get(f"{gateways[0].url}/_licensechain/metrics").text
        assert 'reason="token_revoked"' in metrics
    finally:
        denylist.unrevoke_sub(sub)
        denylist.close()


def test_revoking_one_token_id_spares_the_licenses_other_tokens(
    gateways: tuple[Server, Server], issuer: TestIssuer, redis_url: str
) -> None:
    sub = f"lic_jti_{uuid.uuid4().hex}"
    revoked = issuer.token(sub=sub, features=("premium",))
    kept = issuer.token(sub=sub, features=("premium",))
    denylist = denylist_from_uri(redis_url)
    try:
        denylist.revoke_jti(TestIssuer.claims_of(revoked)["jti"], ttl=120)
        for gateway in gateways:
            refused_soon(f"{gateway.url}/premium/x", {"Authorization": f"Bearer {revoked}"})
            good = httpx.get(
                f"{gateway.url}/premium/x", headers={"Authorization": f"Bearer {kept}"}
            )
            assert good.status_code == 200
    finally:
        denylist.close()
