"""The API-key endpoints: list, show, create, update, rotate, revoke, and an app's own key.

Thin views over ``services/api_keys.py``: a key sees the keys within its environment and
app restriction (others answer 404) and can change only keys with no more rights than its
own (403 otherwise). Secrets appear once, in the answer of create, rotate and
regenerate-key (``Cache-Control: no-store``); listings never carry them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from flask import Response

from .. import field_limits as limits
from ..core.errors import InvalidRequest, NotFound
from ..serialize import api_key_json
from ..services import api_keys as service
from ..state import get_issuer_state
from ..store.api_keys import DEFAULT_ROTATION_GRACE, MAX_ROTATION_GRACE
from .auth import check_app_visible, current_api_key, request_actor, requires
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response

#: the scopes of the key ``POST /apps/<id>/regenerate-key`` makes (limited to that app)
APP_KEY_SCOPES: Final = ("apps:read", "licenses:read", "licenses:write")
APP_IDS_NAMES: Final = ("appIds", "app_ids")
EXPIRY_NAMES: Final = ("expiresAt", "expires_at")
GRACE_NAMES: Final = ("gracePeriodSeconds", "grace_period_seconds")
_CREATE_FIELDS: Final = {
    "name",
    "description",
    "scopes",
    "role",
    "environment",
    *APP_IDS_NAMES,
    *EXPIRY_NAMES,
}


def _expiry(fields: Fields) -> datetime | None:
    raw = fields.raw(*EXPIRY_NAMES)
    if raw is None or raw == "":
        return None
    return fields.timestamp(*EXPIRY_NAMES)


@bp.get("/api-keys")
@requires("api-keys:read")
def list_api_keys() -> Response:
    """Every key the caller may see (its environment and apps), oldest first; never a
    secret."""
    store = get_issuer_state().store
    now = datetime.now(UTC)
    keys = service.visible_keys(store, current_api_key())
    return json_response({"apiKeys": [api_key_json(k, now) for k in keys], "total": len(keys)})


@bp.get("/api-keys/<key_id>")
@requires("api-keys:read")
def get_api_key(key_id: str) -> Response:
    """One key, or 404 (also for a key beyond the caller's environment or apps)."""
    store = get_issuer_state().store
    return json_response(api_key_json(service.visible_key(store, current_api_key(), key_id)))


@bp.post("/api-keys")
@requires("api-keys:write")
def create_api_key() -> Response:
    """A new API key, shown once (201). ``role`` or ``scopes``; ``appIds`` limits it to
    those apps (default: the caller's restriction); it never gets more rights than the
    caller's (403)."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, _CREATE_FIELDS)
    name = fields.required_string("name", max_length=limits.NAME)
    description = fields.string("description", max_length=limits.DESCRIPTION, allow_empty=True)
    role = fields.string("role", max_length=limits.SCOPE)
    scopes = fields.string_list("scopes", max_items=limits.SCOPES, max_length=limits.SCOPE)
    if role is None and not scopes:
        raise InvalidRequest("Give 'role' or 'scopes' (at least one scope).")
    if role is not None and scopes is not None:
        raise InvalidRequest("Give 'role' or 'scopes', not both.")
    environment = fields.string("environment", max_length=8)
    app_ids = fields.string_list(
        *APP_IDS_NAMES, max_items=limits.API_KEY_APPS, max_length=limits.APP_ID
    )
    if app_ids is not None and not app_ids:
        raise InvalidRequest("'appIds' must name at least one app (omit it for every app).")
    record, plaintext = service.create_key(
        state.store,
        request_actor(),
        creator=current_api_key(),
        name=name,
        scopes=scopes,
        role=role,
        description=description,
        environment=environment,
        app_ids=app_ids,
        expires_at=_expiry(fields),
    )
    return json_response({**api_key_json(record), "key": plaintext}, 201, NO_STORE)


@bp.patch("/api-keys/<key_id>")
@requires("api-keys:write")
def update_api_key(key_id: str) -> Response:
    """Change ``name``, ``description`` or ``expiresAt`` (null: never)."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, {"name", "description", *EXPIRY_NAMES})
    changes: dict[str, Any] = {}
    if fields.present("name"):
        changes["name"] = fields.required_string("name", max_length=limits.NAME)
    if fields.present("description"):
        changes["description"] = fields.string(
            "description", max_length=limits.DESCRIPTION, allow_empty=True
        )
    if fields.present(*EXPIRY_NAMES):
        changes["expires_at"] = _expiry(fields)
    record = service.update_key(
        state.store, request_actor(), key_id, creator=current_api_key(), **changes
    )
    return json_response(api_key_json(record))


@bp.post("/api-keys/<key_id>/rotate")
@requires("api-keys:write")
def rotate_api_key(key_id: str) -> Response:
    """A new secret, shown once; the old one keeps working ``gracePeriodSeconds`` more
    (default 86400, 0 to 2592000)."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, set(GRACE_NAMES))
    seconds = fields.integer(
        *GRACE_NAMES, minimum=0, maximum=int(MAX_ROTATION_GRACE.total_seconds())
    )
    grace = DEFAULT_ROTATION_GRACE if seconds is None else timedelta(seconds=seconds)
    record, plaintext = service.rotate_key(
        state.store, request_actor(), key_id, creator=current_api_key(), grace=grace
    )
    return json_response({**api_key_json(record), "key": plaintext}, 200, NO_STORE)


@bp.post("/api-keys/<key_id>/revoke")
@requires("api-keys:write")
def revoke_api_key(key_id: str) -> Response:
    """Revoke the key and its previous secret; every worker refuses them from the next
    request. Idempotent."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    record = service.revoke_key(state.store, request_actor(), key_id, creator=current_api_key())
    return json_response(api_key_json(record))


@bp.post("/apps/<app_id>/regenerate-key")
@requires("api-keys:write")
def regenerate_app_key(app_id: str) -> Response:
    """A new API key limited to the app, shown once (201); the app's previous keys are
    revoked in the same transaction."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    check_app_visible(app_id)
    app = state.store.apps.get(app_id)
    if app is None:
        raise NotFound("App not found.")
    record, plaintext, revoked = service.replace_app_key(
        state.store,
        request_actor(),
        app.id,
        creator=current_api_key(),
        name=f"{app.name[:150]} (app key)",
        scopes=APP_KEY_SCOPES,
    )
    body = {
        **api_key_json(record),
        "appId": app.id,
        "key": plaintext,
        "apiKey": plaintext,
        "revokedKeyIds": revoked,
    }
    return json_response(body, 201, NO_STORE)
