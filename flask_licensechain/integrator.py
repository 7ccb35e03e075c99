"""Integrator mode: where the verifier's keys come from when this app is not the issuer.

``LICENSECHAIN_JWKS_URL`` -> a cached, refetching ``RemoteJWKS``;
``LICENSECHAIN_JWKS_FILE`` -> a fixed ``StaticKeySource`` (air-gapped installs).
"""

from __future__ import annotations

from .config import Settings
from .core.errors import ConfigError, LicenseChainError
from .core.jwks import RemoteJWKS
from .core.keysource import KeySource, StaticKeySource


def build_key_source(settings: Settings) -> KeySource:
    """The key source of an integrator app, checked now rather than at the first request.

    :raises ConfigError: the settings name no source or both, the JWKS URL is not
        allowed (https only; plain http for loopback or with ``LICENSECHAIN_JWKS_ALLOW_HTTP``),
        or the JWKS file cannot be read or holds no usable key.
    """
    if settings.jwks_url and settings.jwks_file:
        raise ConfigError("set LICENSECHAIN_JWKS_URL or LICENSECHAIN_JWKS_FILE, not both")
    if settings.jwks_url:
        try:
            return RemoteJWKS(
                settings.jwks_url,
                cache_ttl=settings.jwks_cache_ttl,
                allow_http=settings.jwks_allow_http,
            )
        except ValueError as exc:
            raise ConfigError(f"LICENSECHAIN_JWKS_URL: {exc}") from None
    if settings.jwks_file:
        try:
            return StaticKeySource(settings.jwks_file)
        except (OSError, ValueError, LicenseChainError) as exc:
            raise ConfigError(f"LICENSECHAIN_JWKS_FILE {settings.jwks_file}: {exc}") from None
    raise ConfigError("integrator mode needs LICENSECHAIN_JWKS_URL or LICENSECHAIN_JWKS_FILE")
