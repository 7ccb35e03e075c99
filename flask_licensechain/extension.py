"""``LicenseChain(app)`` / ``LicenseChain().init_app(app)``.

Nothing app-specific lives on the extension object: everything is in
``app.extensions["licensechain"]`` (see ``flask_licensechain.state``), so one extension
instance can serve several apps (application factory pattern).

Two modes, chosen by configuration:
- issuer (default): a store, a signing key ring, the /v1 API and the CLI;
- integrator (``LICENSECHAIN_JWKS_URL`` or ``LICENSECHAIN_JWKS_FILE``): only the
  verifier behind ``@requires_feature``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from .authoritative import build_live_status_checker
from .config import Settings
from .core.denylist import Denylist
from .core.gate import TokenReader
from .core.keysource import KeySource
from .core.options import audience_set, check_audience_choice
from .core.verifier import TokenVerifier
from .integrator import build_key_source
from .issuer import init_issuer
from .monitoring.setup import install_monitoring
from .revocation import build_denylist
from .state import EXTENSION_KEY, LicenseChainState

log = logging.getLogger("licensechain.extension")


class LicenseChain:
    """The Flask extension.

    Keyword ``options`` are settings by their lower-case names (``database_url=...``); they
    override ``app.config`` (``LICENSECHAIN_<NAME>``), which overrides the defaults listed in
    ``flask_licensechain.config.Settings``. Passing ``app`` calls ``init_app(app)`` at once.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, **options: Any) -> None:
        """Set LicenseChain up on ``app``; ``options`` override the constructor's.

        Reads every ``LICENSECHAIN_*`` key of ``app.config`` once, here, and checks it.
        Builds the
        denylist from ``LICENSECHAIN_DENYLIST_URL`` (or ``LICENSECHAIN_REDIS_URL``, else
        ``memory://``). Then, in integrator mode (``LICENSECHAIN_JWKS_URL`` or
        ``LICENSECHAIN_JWKS_FILE`` set), builds the verifier on that key source; otherwise
        (issuer mode) opens the store at ``LICENSECHAIN_DATABASE_URL`` (default: SQLite
        ``licensechain.db`` in ``app.instance_path``), creates the schema of an empty store,
        creates the first signing key when there is none, loads the key ring, registers the
        API blueprint at ``LICENSECHAIN_URL_PREFIX`` and adds the ``flask licensechain``
        commands. In both modes it then sets up the gate: its token sources, its default
        audience and, with ``LICENSECHAIN_AUTHORITATIVE``, the live-status check. The state
        is stored in ``app.extensions["licensechain"]``.

        Raises:
            RuntimeError: LicenseChain is already registered on ``app``.
            TypeError: an unknown option name.
            flask_licensechain.core.errors.ConfigError: a bad value, an unknown
                ``LICENSECHAIN_*`` key in ``app.config``, an integrator without
                ``LICENSECHAIN_AUDIENCE`` (unless ``LICENSECHAIN_VERIFY_AUDIENCE`` is false),
                a missing optional driver, an unusable key source, authoritative mode
                without a status source.
            ValueError: an unknown denylist URI scheme.
            flask_licensechain.signing.IssuerConfigurationError: an unsafe issuer setup:
                no issuer URL (``LICENSECHAIN_ISSUER`` or ``SERVER_NAME``) outside debug and
                testing, a PostgreSQL store without ``LICENSECHAIN_ENCRYPTION_KEY``, or an
                unreadable ``LICENSECHAIN_SIGNING_KEY_FILE``.
            flask_licensechain.store.migrate.SchemaVersionError: the store's schema is
                older or newer than this code; the message names the command to run.
            flask_licensechain.core.errors.Unavailable: the store cannot be reached.
            flask_licensechain.core.keys.KeyMaterialError: a malformed
                ``LICENSECHAIN_ENCRYPTION_KEY``, or a stored or imported signing key that is
                unusable (wrong encryption key, not an RSA key, a bad key size).
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
        state: LicenseChainState
        if settings.integrator_mode:
            if not settings.issuer:
                log.warning(
                    "LICENSECHAIN_ISSUER is not set: this gate accepts tokens of any issuer "
                    "that its JWKS signs for; set it to the issuer's API base URL"
                )
            keys = build_key_source(settings)
            denylist = build_denylist(settings)
            state = LicenseChainState(
                settings=settings,
                verifier=make_verifier(settings, keys, denylist),
                denylist=denylist,
                key_source=keys,
            )
        else:
            state = init_issuer(app, settings)
            install_monitoring(app, state)
        state.token_reader = TokenReader(settings.token_sources, settings.token_cookie)
        state.gate_audience = audience_set(settings.audience) or None
        if settings.authoritative:
            state.live_status = build_live_status_checker(state.settings, state.store)
        app.extensions[EXTENSION_KEY] = state


def make_verifier(settings: Settings, keys: KeySource, denylist: Denylist) -> TokenVerifier:
    """The token verifier of an app: its keys, its denylist, and the settings' issuer,
    leeway (seconds), token size cap (bytes) and verified-token cache size. The audience
    is the gate's to check, per call: a decorator may name its own."""
    return TokenVerifier(
        keys,
        issuer=settings.issuer,
        audience=None,
        leeway=settings.leeway,
        max_token_bytes=settings.max_token_bytes,
        denylist=denylist,
        cache_size=settings.verified_cache_size,
    )
