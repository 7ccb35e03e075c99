"""The license token contract's numbers and claim set, written out as the contract gives them."""

from __future__ import annotations

import base64

import pytest

from flask_licensechain.core import contract
from flask_licensechain.core.contract import (
    LONGEST_TTL,
    STATUS_REASON,
    TIER_TO_VT,
    TTL_BY_VT,
    build_claims,
    clamp_leeway,
    new_jti,
    verification_type,
)


def test_ttls_by_verification_type() -> None:
    assert dict(TTL_BY_VT) == {"basic": 900, "advanced": 3600, "custom": 86400}


def test_longest_ttl_is_a_day() -> None:
    assert LONGEST_TTL == 86400


def test_seller_tiers_map_to_verification_types() -> None:
    assert dict(TIER_TO_VT) == {
        "free": "basic",
        "pro": "advanced",
        "business": "custom",
        "enterprise": "custom",
    }
    assert contract.SELLER_TIERS == ("free", "pro", "business", "enterprise")
    assert [verification_type(t) for t in contract.SELLER_TIERS] == [
        "basic",
        "advanced",
        "custom",
        "custom",
    ]


def test_limits() -> None:
    assert (contract.DEFAULT_LEEWAY, contract.MAX_LEEWAY) == (30, 300)
    assert contract.DEFAULT_MAX_TOKEN_BYTES == 8192
    assert contract.MAX_KID_LENGTH == 128
    assert (contract.TOKEN_USE, contract.ALGORITHM) == ("licensechain_license_v1", "RS256")
    assert contract.LICENSE_STATUSES == ("ACTIVE", "SUSPENDED", "REVOKED", "EXPIRED")


def test_status_reasons() -> None:
    assert dict(STATUS_REASON) == {
        "SUSPENDED": "license_suspended",
        "REVOKED": "license_revoked",
        "EXPIRED": "license_expired",
    }


@pytest.mark.parametrize(
    ("given", "clamped"),
    [(-1, 0.0), (0, 0.0), (0.5, 0.5), (30, 30.0), (300, 300.0), (301, 300.0), (1e9, 300.0)],
)
def test_leeway_is_clamped_to_0_300_seconds(given: float, clamped: float) -> None:
    assert clamp_leeway(given) == clamped


def test_jti_carries_at_least_128_random_bits_url_safe() -> None:
    jtis = {new_jti() for _ in range(200)}
    assert len(jtis) == 200
    for jti in jtis:
        raw = base64.urlsafe_b64decode(jti + "=" * (-len(jti) % 4))
        assert len(raw) * 8 >= 128
        assert jti.replace("-", "").replace("_", "").isalnum()


def test_claims_of_one_issuance() -> None:
    claims = build_claims(
        issuer="https://issuer.test",
        license_id="lic_1",
        app_id="app_1",
        seller_tier="business",
        plan="gold",
        features=("a", "b"),
        license_exp=2_000_000_000,
        hw_bound=True,
        now=1_800_000_000,
    )
    jti = claims.pop("jti")
    assert isinstance(jti, str) and len(jti) >= 22
    assert claims == {
        "iss": "https://issuer.test",
        "sub": "lic_1",
        "aud": "app_1",
        "iat": 1_800_000_000,
        "nbf": 1_800_000_000,
        "exp": 1_800_000_000 + 86400,
        "token_use": "licensechain_license_v1",
        "lc_vt": "custom",
        "seller_tier": "business",
        "status": "ACTIVE",
        "hw_bound": True,
        "plan": "gold",
        "features": ["a", "b"],
        "license_exp": 2_000_000_000,
    }


def test_perpetual_license_has_no_license_exp_claim() -> None:
    claims = build_claims(
        issuer="i",
        license_id="lic_1",
        app_id="app_1",
        seller_tier="free",
        plan=None,
        features=[],
        license_exp=None,
        hw_bound=False,
        now=100,
        status="ACTIVE",
    )
    assert "license_exp" not in claims
    assert (claims["exp"], claims["plan"], claims["features"]) == (100 + 900, None, [])


def test_token_never_outlives_its_license() -> None:
    claims = build_claims(
        issuer="i",
        license_id="lic_1",
        app_id="app_1",
        seller_tier="pro",
        plan=None,
        features=[],
        license_exp=150,
        hw_bound=False,
        now=100,
    )
    assert (claims["exp"], claims["license_exp"]) == (150, 150)
