"""Per-app state of the extension: what ``init_app`` builds and every request reads.

It lives in ``app.extensions["licensechain"]``, never on the extension object, so one
process can host several apps (application factory pattern). At run time this module
imports only the framework-free core: every other module may read the state without an
import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from flask import Flask, current_app

from .core.gate import TokenReader

if TYPE_CHECKING:
    from .api.cors import OriginAllowList
    from .api.ratelimit import PublicRateLimits
    from .api.urls import BaseUrls
    from .authoritative import LiveStatusChecker
    from .config import Settings
    from .core.denylist import Denylist
    from .core.keyring import KeyRing
    from .core.keysource import KeySource
    from .core.sealing import Sealer
    from .core.verifier import TokenVerifier
    from .monitoring.signals import Monitoring
    from .signing import SigningKeys
    from .store import Store
    from .webhooks.runtime import WebhookRuntime
    from .webhooks.worker import BackgroundWorker

EXTENSION_KEY: Final = "licensechain"


@dataclass(eq=False, kw_only=True)
class LicenseChainState:
    """What every LicenseChain app has: its settings and the verifier behind the gate.

    ``store``, ``keyring`` and ``limiter`` are ``None`` unless the app is an issuer (then
    its state is an ``IssuerState``).
    """

    settings: Settings
    verifier: TokenVerifier
    denylist: Denylist
    key_source: KeySource
    store: Store | None = None
    keyring: KeyRing | None = None
    limiter: PublicRateLimits | None = None
    #: the gate's token sources (``LICENSECHAIN_TOKEN_SOURCES``, ``..._TOKEN_COOKIE``)
    token_reader: TokenReader = field(default_factory=lambda: TokenReader(("bearer",)))
    #: app ids the gate accepts when a decorator names none; None: no default audience
    gate_audience: frozenset[str] | None = None
    #: authoritative mode's live-status check (``LICENSECHAIN_AUTHORITATIVE``)
    live_status: LiveStatusChecker | None = None


@dataclass(eq=False, kw_only=True)
class IssuerState(LicenseChainState):
    """The state of an issuer app: the store, its signing keys and the /v1 API's caches.

    ``jwks_json`` is the last JWKS document served with its serialized body and ETag,
    swapped as one tuple so that threads never mix them; ``openapi_json`` is the served
    OpenAPI document, built on first request.
    """

    store: Store
    keyring: KeyRing
    limiter: PublicRateLimits
    signing_keys: SigningKeys
    urls: BaseUrls
    #: the public endpoints' CORS allow-list (the apps' ``allowed_origins``)
    cors_origins: OriginAllowList
    jwks_json: tuple[Any, str, str] = (None, "", "")
    openapi_json: str | None = None
    #: the keyring sealing secrets at rest (``core/sealing.py``): webhook and TOTP secrets
    #: seal and unseal through it
    sealer: Sealer
    #: the webhooks (issue 12): settings, outbox, sender; and the in-process worker, if any
    webhooks: WebhookRuntime | None = None
    webhook_worker: BackgroundWorker | None = None
    #: metrics and security signals (``flask_licensechain/monitoring``); None: not set up
    monitoring: Monitoring | None = None


def get_state(app: Flask | None = None) -> LicenseChainState:
    """The LicenseChain state of ``app`` (default: the current app).

    Raises ``RuntimeError`` when ``LicenseChain`` was not initialised on that app, or when
    called without an app and outside an application context.
    """
    target: Flask = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        state: LicenseChainState = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "LicenseChain is not registered on this Flask app. "
            "Did you forget to call LicenseChain(app) or licensechain.init_app(app)?"
        ) from None
    return state


def get_issuer_state(app: Flask | None = None) -> IssuerState:
    """The state of an issuer app (default: the current app).

    Raises ``RuntimeError`` as ``get_state`` does, and when the app is in integrator mode
    (``LICENSECHAIN_JWKS_URL`` or ``LICENSECHAIN_JWKS_FILE`` set): it has no store.
    """
    state = get_state(app)
    if not isinstance(state, IssuerState):
        raise RuntimeError(
            "This app's LicenseChain is in integrator mode (LICENSECHAIN_JWKS_URL or "
            "LICENSECHAIN_JWKS_FILE is set): it has no store to administer."
        )
    return state
