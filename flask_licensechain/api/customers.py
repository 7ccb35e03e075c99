"""A data subject's records: ``POST /v1/customers/export`` and ``POST /v1/customers/erase``.

Thin views over ``services/customers.py``. Body ``{"email", "appId"?}``. A key acts within
the apps it sees (``api/auth.py``): with ``appId``, on that app (404 for an app it does not
see); without, on every app it sees. An unrestricted live key also reaches the records tied
to no app (audit events and deliveries that only mention the address, console sign-in
failures): the seller's own key, as the CLI. Scopes: ``customers:read`` (export),
``customers:erase`` (erase).
"""

from __future__ import annotations

from flask import Response

from .. import field_limits as limits
from ..services.customers import erase_customer, export_customer
from ..state import get_issuer_state
from ..store.apps import AppScope
from ..store.customers import WHOLE_STORE, Reach
from .auth import check_app_visible, key_scope, request_actor, requires
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response

_TEST_APPS = AppScope(mode="test")
_APP_NAMES = ("appId", "app_id")
_FIELDS = {"email", *_APP_NAMES}


def _request() -> tuple[str, Reach]:
    """The body's e-mail and the records the request reaches."""
    fields = Fields(read_json_body(get_issuer_state().settings.max_body_bytes))
    reject_unknown(fields, _FIELDS)
    email = fields.required_string("email", max_length=limits.EMAIL)
    app_id = fields.string(*_APP_NAMES, max_length=limits.APP_ID)
    if app_id is not None:
        check_app_visible(app_id)
        return email, Reach((app_id,), store_wide=False)
    scope = key_scope()
    unrestricted_live = scope.app_ids is None and scope.mode == "live"
    apps = get_issuer_state().store.apps
    if unrestricted_live and apps.count(scope=_TEST_APPS) == 0:
        return email, WHOLE_STORE
    visible = tuple(app.id for app in apps.list(scope=scope))
    return email, Reach(visible, store_wide=unrestricted_live)


@bp.post("/customers/export")
@requires("customers:read")
def export_view() -> Response:
    email, reach = _request()
    document = export_customer(get_issuer_state(), request_actor(), email=email, reach=reach)
    return json_response(document, 200, NO_STORE)


@bp.post("/customers/erase")
@requires("customers:erase")
def erase_view() -> Response:
    email, reach = _request()
    result = erase_customer(get_issuer_state(), request_actor(), email=email, reach=reach)
    return json_response(result, 200, NO_STORE)
