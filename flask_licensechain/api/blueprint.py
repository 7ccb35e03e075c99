"""The blueprint factory: a fresh blueprint per Flask app.

Its rate limits bind to that app's limiter and its views close over that app's state, so a
request does no extension lookups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response
from flask_limiter.errors import RateLimitExceeded

from . import BLUEPRINT_NAME
from .admin import register_admin_routes
from .http import install_error_handlers
from .licenses import register_license_routes
from .public import register_public_routes
from .ratelimit import public_limits

if TYPE_CHECKING:
    from ..extension import LicenseChainState


def _no_store_by_default(response: Response) -> Response:
    # API answers carry license keys, tokens and API keys: no cache keeps them unless an
    # endpoint says otherwise (the JWKS does).
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def build_blueprint(state: LicenseChainState) -> Blueprint:
    if state.limiter is None:
        raise RuntimeError("the issuer API needs the app's rate limiter")
    bp = Blueprint(BLUEPRINT_NAME, __name__)
    install_error_handlers(bp)
    bp.after_request(_no_store_by_default)
    limits = public_limits(state.limiter, state.settings)
    bp.register_error_handler(RateLimitExceeded, limits.render_breach)
    register_public_routes(bp, state, limits)
    register_admin_routes(bp, state)
    register_license_routes(bp, state)
    return bp
