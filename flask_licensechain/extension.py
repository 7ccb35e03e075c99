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

from .authoritative import LiveStatusChecker, build_live_status_checker
from .config import Settings
from .core.denylist import Denylist, RevocationSource, denylist_from_uri
from .core.gate import TokenReader
from .core.keysource import KeySource
from .core.options import audience_set, check_audience_choice
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
    #: the gate's token sources (``LICENSECHAIN_TOKEN_SOURCES``, ``..._TOKEN_COOKIE``)
    token_reader: TokenReader = field(default_factory=lambda: TokenReader(("bearer",)))
    #: app ids the gate accepts when a decorator names none; None: no default audience
    gate_audience: frozenset[str] | None = None
    #: authoritative mode's live-status check (``LICENSECHAIN_AUTHORITATIVE``)
    live_status: LiveStatusChecker | None = None


class LicenseChain:
    """The Flask extension. Keyword options override ``app.config`` (``LICENSECHAIN_<NAME>``)."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, **options: Any) -> None:
        """Read and check every ``LICENSECHAIN_*`` setting, then build the app's state.

        :raises ConfigError: a bad value, an unknown ``LICENSECHAIN_*`` key in
            ``app.config``, an integrator without ``LICENSECHAIN_AUDIENCE`` (unless
            ``LICENSECHAIN_VERIFY_AUDIENCE`` is false), an issuer without an issuer URL
            outside debug and testing, a missing optional driver, an unusable key source.
        :raises TypeError: an unknown keyword option.
        :raises RuntimeError: the app already has LicenseChain.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("LicenseChain is already registered on this app.")
        settings = Settings.from_mapping(app.config, {**self._options, **options})
        if settings.integrator_mode or not settings.verify_audience:
            check_audience_choice(
                settings.audience,
                settings.verify_audience,
                audience_key="LICENSECHAIN_AUDIENCE",
                verify_key="LICENSECHAIN_VERIFY_AUDIENCE",
            )
        if settings.integrator_mode:
            from .integrator import build_key_source

            state = self._state(settings, build_key_source(settings), build_denylist(settings))
        else:
            from .issuer import init_issuer

            state = init_issuer(app, settings)
        state.token_reader = TokenReader(settings.token_sources, settings.token_cookie)
        state.gate_audience = audience_set(settings.audience) or None
        if settings.authoritative:
            state.live_status = build_live_status_checker(state.settings, state.store)
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
    # The audience is the gate's to check, per call: a decorator may name its own.
    return TokenVerifier(
        keys,
        issuer=settings.issuer,
        audience=None,
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
