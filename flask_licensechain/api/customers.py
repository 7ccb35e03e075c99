"""A data subject's records: ``POST /v1/customers/export`` and ``POST /v1/customers/erase``.

Thin views over ``services/customers.py``. Body ``{"email"}``. An app-limited key acts
within its app only. Scopes: ``customers:read`` (export), ``customers:erase`` (erase).
"""

from __future__ import annotations

from flask import Response

from .. import field_limits as limits
from ..services.customers import erase_customer, export_customer
from ..state import get_issuer_state
from .auth import current_api_key, request_actor, requires
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response

_FIELDS = {"email"}


def _email() -> str:
    fields = Fields(read_json_body(get_issuer_state().settings.max_body_bytes))
    reject_unknown(fields, _FIELDS)
    return fields.required_string("email", max_length=limits.EMAIL)


@bp.post("/customers/export")
@requires("customers:read")
def export_view() -> Response:
    email = _email()
    document = export_customer(
        get_issuer_state(), request_actor(), email=email, app_id=current_api_key().app_id
    )
    return json_response(document, 200, NO_STORE)


@bp.post("/customers/erase")
@requires("customers:erase")
def erase_view() -> Response:
    email = _email()
    result = erase_customer(
        get_issuer_state(), request_actor(), email=email, app_id=current_api_key().app_id
    )
    return json_response(result, 200, NO_STORE)
