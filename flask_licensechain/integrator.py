"""Integrator mode: where the verifier's keys come from when this app is not the issuer.

``LICENSECHAIN_JWKS_URL`` -> a cached, refetching ``RemoteJWKS``;
``LICENSECHAIN_JWKS_FILE`` -> a fixed ``StaticKeySource`` (air-gapped installs).
"""

from __future__ import annotations

from .config import Settings
from .core.jwks import RemoteJWKS
from .core.keysource import KeySource, StaticKeySource


def build_key_source(settings: Settings) -> KeySource:
    """The key source of an integrator app; ``ValueError`` when the settings name none or both."""
    if settings.jwks_url and settings.jwks_file:
        raise ValueError("set LICENSECHAIN_JWKS_URL or LICENSECHAIN_JWKS_FILE, not both")
    if settings.jwks_url:
        return RemoteJWKS(
            settings.jwks_url,
            cache_ttl=settings.jwks_cache_ttl,
            allow_http=settings.jwks_allow_http,
        )
    if settings.jwks_file:
        return StaticKeySource(settings.jwks_file)
    raise ValueError("integrator mode needs LICENSECHAIN_JWKS_URL or LICENSECHAIN_JWKS_FILE")
