"""The API's blueprints: ``bp`` (the API, at its prefix) and ``root_bp`` (``GET /health``
outside the prefix, which LicenseChain's status monitor polls), with their error handlers,
response headers and CORS.

The view modules (``public``, ``admin``, ``licenses``, ``openapi``) add their routes to it
when ``flask_licensechain.api`` is imported. The same blueprint serves every issuer app in
the process: views find their app's state with ``get_issuer_state()``.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Flask, Response, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from ..core.errors import LicenseChainError
from ..state import get_issuer_state
from .converters import CONVERTERS
from .cors import add_cors_headers, preflight
from .http import (
    contract_routing_error_hook,
    finish_response,
    render_http_exception,
    render_licensechain_error,
    render_unexpected,
)

BLUEPRINT_NAME: Final = "licensechain"
ROOT_BLUEPRINT_NAME: Final = "licensechain_root"
#: the endpoints without credentials: the only ones that answer CORS
PUBLIC_ENDPOINTS: Final = frozenset(
    {
        *(
            f"{BLUEPRINT_NAME}.{view}"
            for view in ("verify", "validate_hardware", "jwks", "introspect", "health")
        ),
        f"{ROOT_BLUEPRINT_NAME}.root_health",
    }
)


def _cors_preflight() -> Response | None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        return None
    return preflight(get_issuer_state().cors_origins)


def _cors_headers(response: Response) -> Response:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        return response
    return add_cors_headers(response, get_issuer_state().cors_origins)


def _blueprint(name: str) -> Blueprint:
    made = Blueprint(name, __name__)
    made.register_error_handler(LicenseChainError, render_licensechain_error)
    made.register_error_handler(HTTPException, render_http_exception)
    made.register_error_handler(Exception, render_unexpected)
    made.before_request(_cors_preflight)
    made.after_request(_cors_headers)
    made.after_request(finish_response)
    return made


bp = _blueprint(BLUEPRINT_NAME)
root_bp = _blueprint(ROOT_BLUEPRINT_NAME)


@bp.record_once
def _register_converters(setup: BlueprintSetupState) -> None:
    """Before any route is added: license references, hardware ids that may contain "/"."""
    app: Flask = setup.app  # type: ignore[assignment]
    for name, converter in CONVERTERS.items():
        app.url_map.converters.setdefault(name, converter)


@bp.record
def _answer_routing_errors_under_the_prefix(setup: BlueprintSetupState) -> None:
    """404 and 405 under the blueprint's prefix get the contract's JSON body too.

    A routing failure belongs to no blueprint, so the handlers above never see it, and an
    app-wide 404 handler would replace the host app's own: an app ``before_request`` hook
    answers it, for this prefix only.
    """
    setup.app.before_request(contract_routing_error_hook(setup.url_prefix or ""))
