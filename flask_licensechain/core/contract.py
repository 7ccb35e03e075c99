"""The license token contract (the claims, lifetimes and refusal reasons that the issuer,
the in-app gate and the middleware share) as constants and one claim builder."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Final

TOKEN_USE: Final = "licensechain_license_v1"  # noqa: S105 - a claim value
ALGORITHM: Final = "RS256"

#: seller tier -> verification type (``lc_vt``)
TIER_TO_VT: Final[Mapping[str, str]] = {
    "free": "basic",
    "pro": "advanced",
    "business": "custom",
    "enterprise": "custom",
}
SELLER_TIERS: Final = tuple(TIER_TO_VT)

#: token lifetime in seconds by ``lc_vt``
TTL_BY_VT: Final[Mapping[str, int]] = {"basic": 900, "advanced": 3600, "custom": 86400}
LONGEST_TTL: Final = max(TTL_BY_VT.values())

DEFAULT_LEEWAY: Final = 30
MAX_LEEWAY: Final = 300
DEFAULT_MAX_TOKEN_BYTES: Final = 8 * 1024
MAX_KID_LENGTH: Final = 128

LICENSE_STATUSES: Final = ("ACTIVE", "SUSPENDED", "REVOKED", "EXPIRED")


class Reason:
    """Verification outcome reasons (``reason`` members of verify/introspect answers)."""

    # ruff's S105 takes TOKEN_* names for passwords; these are reason codes.

    LICENSE_NOT_FOUND: Final = "license_not_found"
    APP_MISMATCH: Final = "app_mismatch"
    LICENSE_EXPIRED: Final = "license_expired"
    LICENSE_SUSPENDED: Final = "license_suspended"
    LICENSE_REVOKED: Final = "license_revoked"
    HARDWARE_ID_MISMATCH: Final = "hardware_id_mismatch"
    HARDWARE_ID_REQUIRED: Final = "hardware_id_required"
    TOKEN_INVALID: Final = "token_invalid"  # noqa: S105
    TOKEN_EXPIRED: Final = "token_expired"  # noqa: S105
    TOKEN_REVOKED: Final = "token_revoked"  # noqa: S105


#: license status -> the reason a verify or introspect gives for it
STATUS_REASON: Final[Mapping[str, str]] = {
    "SUSPENDED": Reason.LICENSE_SUSPENDED,
    "REVOKED": Reason.LICENSE_REVOKED,
    "EXPIRED": Reason.LICENSE_EXPIRED,
}


def verification_type(seller_tier: str) -> str:
    return TIER_TO_VT[seller_tier]


def clamp_leeway(leeway: float) -> float:
    return min(max(0.0, float(leeway)), float(MAX_LEEWAY))


def new_jti() -> str:
    """128+ random bits, URL-safe."""
    return secrets.token_urlsafe(18)


def build_claims(
    *,
    issuer: str,
    license_id: str,
    app_id: str,
    seller_tier: str,
    plan: str | None,
    features: Sequence[str],
    license_exp: int | None,
    hw_bound: bool,
    now: int,
    status: str = "ACTIVE",
) -> dict[str, Any]:
    """The claims of one issuance; ``exp`` never outlives the license."""
    lc_vt = TIER_TO_VT[seller_tier]
    exp = now + TTL_BY_VT[lc_vt]
    if license_exp is not None:
        exp = min(exp, license_exp)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": license_id,
        "aud": app_id,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "jti": new_jti(),
        "token_use": TOKEN_USE,
        "lc_vt": lc_vt,
        "seller_tier": seller_tier,
        "status": status,
        "hw_bound": hw_bound,
        "plan": plan,
        "features": list(features),
    }
    if license_exp is not None:
        claims["license_exp"] = license_exp
    return claims
