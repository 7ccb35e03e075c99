"""``LicenseChain(app)`` / ``LicenseChain().init_app(app)``.

Nothing app-specific lives on the extension object: everything is in
``app.extensions["licensechain"]`` (a ``LicenseChainState``), so one extension
instance can serve several apps (application factory pattern).

Two modes, chosen by configuration:
- issuer (default): a store, a signing key ring, the /v1 API and the CLI;
- integrator (``LICENSECHAIN_JWKS_URL`` or ``LICENSECHAIN_JWKS_FILE``): only the
  verifier behind ``@requires_feature``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .config import Settings
from .core.denylist import Denylist, RevocationSource, denylist_from_uri
from .core.keysource import KeySource
from .core.verifier import TokenVerifier

if TYPE_CHECKING:
    from .api.ratelimit import PublicRateLimits
    from .core.keyring import KeyRing
    from .store import Store

EXTENSION_KEY = "licensechain"


@dataclass
class LicenseChainState:
    settings: Settings
    verifier: TokenVerifier
    denylist: Denylist
    key_source: KeySource
    store: Store | None = None
    keyring: KeyRing | None = None
    limiter: PublicRateLimits | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class LicenseChain:
    """The Flask extension. Keyword options override ``app.config`` (``LICENSECHAIN_<NAME>``)."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, **options: Any) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("LicenseChain is already registered on this app.")
        settings = Settings.from_mapping(app.config, {**self._options, **options})
        if settings.integrator_mode:
            from .integrator import build_key_source

            state = self._state(settings, build_key_source(settings), build_denylist(settings))
        else:
            from .issuer import init_issuer

            state = init_issuer(app, settings)
        app.extensions[EXTENSION_KEY] = state

    @staticmethod
    def _state(settings: Settings, keys: KeySource, denylist: Denylist) -> LicenseChainState:
        return LicenseChainState(
            settings=settings,
            verifier=make_verifier(settings, keys, denylist),
            denylist=denylist,
            key_source=keys,
        )


def build_denylist(settings: Settings, source: RevocationSource | None = None) -> Denylist:
    """The configured denylist; with ``source`` (the issuer's store) it follows the store."""
    return denylist_from_uri(
        settings.denylist_url or settings.redis_url or "memory://",
        fail_open=settings.denylist_fail_open,
        mirror=settings.denylist_mirror,
        source=source,
        poll_interval=settings.revocation_poll_interval,
    )


def make_verifier(settings: Settings, keys: KeySource, denylist: Denylist) -> TokenVerifier:
    return TokenVerifier(
        keys,
        issuer=settings.issuer,
        audience=settings.audience,
        leeway=settings.leeway,
        max_token_bytes=settings.max_token_bytes,
        denylist=denylist,
        cache_size=settings.verified_cache_size,
    )


def get_state(app: Flask | None = None) -> LicenseChainState:
    """The state of ``app`` (default: the current app), with a clear error if missing."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        state: LicenseChainState = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "LicenseChain is not registered on this Flask app. "
            "Did you forget to call LicenseChain(app) or licensechain.init_app(app)?"
        ) from None
    return state
