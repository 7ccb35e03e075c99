"""The API's one blueprint, ``bp``: its error handlers and response headers.

The view modules (``public``, ``admin``, ``licenses``, ``openapi``) add their routes to it
when ``flask_licensechain.api`` is imported. The same blueprint serves every issuer app in
the process: views find their app's state with ``get_issuer_state()``.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from ..core.errors import LicenseChainError
from .http import (
    contract_routing_error_hook,
    finish_response,
    render_http_exception,
    render_licensechain_error,
    render_unexpected,
)

BLUEPRINT_NAME: Final = "licensechain"

bp = Blueprint(BLUEPRINT_NAME, __name__)
bp.register_error_handler(LicenseChainError, render_licensechain_error)
bp.register_error_handler(HTTPException, render_http_exception)
bp.register_error_handler(Exception, render_unexpected)
bp.after_request(finish_response)


@bp.record
def _answer_routing_errors_under_the_prefix(setup: BlueprintSetupState) -> None:
    """404 and 405 under the blueprint's prefix get the contract's JSON body too.

    A routing failure belongs to no blueprint, so the handlers above never see it, and an
    app-wide 404 handler would replace the host app's own: an app ``before_request`` hook
    answers it, for this prefix only.
    """
    setup.app.before_request(contract_routing_error_hook(setup.url_prefix or ""))
