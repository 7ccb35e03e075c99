"""The app's denylist, built from its settings: what every gate of the app asks whether a
token id (``jti``) or a license id (``sub``) is revoked."""

from __future__ import annotations

from .config import Settings
from .core.denylist import Denylist, RevocationSource, denylist_from_uri


def denylist_uri(settings: Settings) -> str:
    """``LICENSECHAIN_DENYLIST_URL``, else ``LICENSECHAIN_REDIS_URL``, else ``memory://``."""
    return settings.denylist_url or settings.redis_url or "memory://"


def build_denylist(settings: Settings, source: RevocationSource | None = None) -> Denylist:
    """The denylist at ``LICENSECHAIN_DENYLIST_URL`` (else ``LICENSECHAIN_REDIS_URL``, else
    ``memory://``). With ``source`` (the issuer's store) it follows the store's revocations,
    polled every ``LICENSECHAIN_REVOCATION_POLL_INTERVAL`` seconds.

    Raises ``ValueError`` for an unknown URI scheme.
    """
    return denylist_from_uri(
        denylist_uri(settings),
        fail_open=settings.denylist_fail_open,
        mirror=settings.denylist_mirror,
        source=source,
        poll_interval=settings.revocation_poll_interval,
    )
