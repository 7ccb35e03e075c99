"""The blueprint factory: a fresh blueprint per Flask app.

Its views close over that app's state (store, key ring, rate limits), so a
request does no extension lookups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from flask import Blueprint, Flask, Response, request
from flask.sansio.blueprints import BlueprintSetupState

from . import BLUEPRINT_NAME
from .admin import register_admin_routes
from .cors import OriginAllowList, add_cors_headers, preflight
from .http import install_error_handlers
from .licenses import (
    HWUID_CONVERTER,
    LICENSE_CONVERTER,
    HwuidConverter,
    LicenseRefConverter,
    register_license_routes,
)
from .public import health_response, register_public_routes

if TYPE_CHECKING:
    from ..extension import LicenseChainState

ROOT_BLUEPRINT_NAME: Final = "licensechain_root"
CORS_EXTRA: Final = "cors_origins"
#: the public endpoints (no credentials): the only ones that answer CORS
PUBLIC_VIEWS: Final = frozenset({"verify", "validate_hardware", "jwks", "introspect", "health"})


def build_blueprint(state: LicenseChainState) -> Blueprint:
    if state.limiter is None or state.store is None:
        raise RuntimeError("the issuer API needs the app's store and rate limiter")
    bp = Blueprint(BLUEPRINT_NAME, __name__)
    # Before any route: license references, and hardware ids that may contain "/".
    bp.record_once(_register_converters)
    install_error_handlers(bp)
    origins = _origins(state)
    install_cors(bp, origins, {f"{BLUEPRINT_NAME}.{view}" for view in PUBLIC_VIEWS})
    register_public_routes(bp, state, state.limiter)
    register_admin_routes(bp, state, origins)
    register_license_routes(bp, state)
    return bp


def build_root_blueprint(state: LicenseChainState) -> Blueprint:
    """``GET /health`` outside the API prefix (LicenseChain's status monitor polls it)."""
    if state.store is None:
        raise RuntimeError("the root health endpoint needs the app's store")
    bp = Blueprint(ROOT_BLUEPRINT_NAME, __name__)
    install_error_handlers(bp)
    install_cors(bp, _origins(state), {f"{ROOT_BLUEPRINT_NAME}.health"})

    @bp.get("/health")
    def health() -> Response:
        return health_response(state)

    return bp


def install_cors(bp: Blueprint, origins: OriginAllowList, endpoints: set[str]) -> None:
    """CORS (preflight and answer headers) on ``endpoints`` only; see ``api/cors.py``."""

    def cors_preflight() -> Response | None:
        return preflight(origins) if request.endpoint in endpoints else None

    def cors_headers(response: Response) -> Response:
        return add_cors_headers(response, origins) if request.endpoint in endpoints else response

    bp.before_request(cors_preflight)
    bp.after_request(cors_headers)


def _origins(state: LicenseChainState) -> OriginAllowList:
    """The app's one CORS allow-list (both blueprints share it, so an app change made
    through the API shows on both at once)."""
    store = state.store
    assert store is not None
    found = state.extras.get(CORS_EXTRA)
    if not isinstance(found, OriginAllowList):
        found = state.extras[CORS_EXTRA] = OriginAllowList(store.apps.all_allowed_origins)
    return found


def _register_converters(setup: BlueprintSetupState) -> None:
    app: Flask = setup.app  # type: ignore[assignment]
    app.url_map.converters.setdefault(HWUID_CONVERTER, HwuidConverter)
    app.url_map.converters.setdefault(LICENSE_CONVERTER, LicenseRefConverter)
