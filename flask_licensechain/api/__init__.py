"""The /v1 HTTP API (CONTRACT.md section 2): thin endpoints, parse -> core/store -> JSON.

Kept import-light: ``api.http`` (request ids, error bodies) is also used by the in-app gate,
so the blueprint and its views load only when an issuer builds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Blueprint

    from ..extension import LicenseChainState

BLUEPRINT_NAME = "licensechain"


def create_blueprint(state: LicenseChainState) -> Blueprint:
    """The API blueprint of one app (register it at ``settings.url_prefix``)."""
    from .blueprint import build_blueprint

    return build_blueprint(state)


def create_root_blueprint(state: LicenseChainState) -> Blueprint:
    """``GET /health`` at the root, for monitors that poll it without the prefix."""
    from .blueprint import build_root_blueprint

    return build_root_blueprint(state)


__all__ = ["BLUEPRINT_NAME", "create_blueprint", "create_root_blueprint"]
