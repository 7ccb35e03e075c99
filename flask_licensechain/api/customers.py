"""A data subject's records: ``POST /v1/customers/export`` and ``POST /v1/customers/erase``.

Thin views over ``services/customers.py``. Body ``{"email", "appId"?}``. A key acts within
the apps it sees (``api/auth.py``): a key of every live app, while no test app exists, acts
on the whole store; a key that sees one app acts on it; any other key names the app with
``appId`` (400 otherwise, 404 for an app it does not see). Scopes: ``customers:read``
(export), ``customers:erase`` (erase).
"""

from __future__ import annotations

from flask import Response

from .. import field_limits as limits
from ..core.errors import InvalidRequest
from ..services.customers import erase_customer, export_customer
from ..state import get_issuer_state
from ..store.apps import AppScope
from .auth import check_app_visible, key_scope, request_actor, requires
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response

_TEST_APPS = AppScope(mode="test")
_APP_NAMES = ("appId", "app_id")
_FIELDS = {"email", *_APP_NAMES}


def _request() -> tuple[str, str | None]:
    """The body's e-mail and the app to act on (``None``: the whole store)."""
    fields = Fields(read_json_body(get_issuer_state().settings.max_body_bytes))
    reject_unknown(fields, _FIELDS)
    email = fields.required_string("email", max_length=limits.EMAIL)
    app_id = fields.string(*_APP_NAMES, max_length=limits.APP_ID)
    if app_id is not None:
        check_app_visible(app_id)
        return email, app_id
    scope = key_scope()
    apps = get_issuer_state().store.apps
    if scope.app_ids is None and scope.mode == "live" and apps.count(scope=_TEST_APPS) == 0:
        return email, None
    visible = apps.list(scope=scope)
    if len(visible) == 1:
        return email, visible[0].id
    raise InvalidRequest(
        "This API key sees several apps (or test apps exist): name one with 'appId'."
    )


@bp.post("/customers/export")
@requires("customers:read")
def export_view() -> Response:
    email, app_id = _request()
    document = export_customer(get_issuer_state(), request_actor(), email=email, app_id=app_id)
    return json_response(document, 200, NO_STORE)


@bp.post("/customers/erase")
@requires("customers:erase")
def erase_view() -> Response:
    email, app_id = _request()
    result = erase_customer(get_issuer_state(), request_actor(), email=email, app_id=app_id)
    return json_response(result, 200, NO_STORE)
