"""The blueprint factory: a fresh blueprint per Flask app.

Its views close over that app's state (store, key ring, rate limits), so a
request does no extension lookups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint

from . import BLUEPRINT_NAME
from .admin import register_admin_routes
from .http import install_error_handlers
from .licenses import register_license_routes
from .public import register_public_routes

if TYPE_CHECKING:
    from ..extension import LicenseChainState


def build_blueprint(state: LicenseChainState) -> Blueprint:
    if state.limiter is None:
        raise RuntimeError("the issuer API needs the app's rate limiter")
    bp = Blueprint(BLUEPRINT_NAME, __name__)
    install_error_handlers(bp)
    register_public_routes(bp, state, state.limiter)
    register_admin_routes(bp, state)
    register_license_routes(bp, state)
    return bp
