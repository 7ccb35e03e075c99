"""Authenticated endpoints other than licenses: apps, token revocation, key rotation, API keys."""

from __future__ import annotations

import time
from typing import Any, Final

import jwt
from flask import Response

from .. import field_limits as limits
from ..core.contract import LONGEST_TTL
from ..core.errors import InsufficientScope, InvalidRequest, NotFound
from ..serialize import api_key_json, app_json, iso
from ..services import apps as app_service
from ..services import tokens as token_service
from ..services.signing_keys import rotate_signing_key
from ..state import IssuerState, get_issuer_state
from ..store import AppRecord, Change
from .analytics_report import query_period, verification_report
from .auth import (
    app_filter,
    check_app_visible,
    current_api_key,
    grants,
    request_actor,
    require_unrestricted,
    requires,
)
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response
from .names import TOKEN_FIELDS
from .query import query_app_id, query_int

#: the scopes of the key ``POST /apps/<id>/regenerate-key`` makes (limited to that app)
APP_KEY_SCOPES: Final = ("apps:read", "licenses:read", "licenses:write")
#: app field -> its accepted names (snake_case as LicenseChain's SDKs send, or camelCase)
APP_FIELD_NAMES: Final = {
    "name": ("name",),
    "description": ("description",),
    "tier": ("tier",),
    "webhook_url": ("webhook_url", "webhookUrl"),
    "allowed_origins": ("allowed_origins", "allowedOrigins"),
}
_APP_NAMES: Final = {name for names in APP_FIELD_NAMES.values() for name in names}


def app_changes(fields: Fields, *, creating: bool) -> dict[str, Any]:
    """The store's keyword arguments for the app members present (``None`` clears
    ``description`` and ``webhook_url`` and empties ``allowed_origins``)."""
    reject_unknown(fields, _APP_NAMES)
    changes: dict[str, Any] = {}
    if creating or fields.present("name"):
        changes["name"] = fields.required_string("name", max_length=limits.NAME)
    if fields.present("description"):
        changes["description"] = fields.string(
            "description", max_length=limits.DESCRIPTION, allow_empty=True
        )
    if fields.present("tier"):
        tier = fields.string("tier", max_length=32)
        if tier is None and not creating:
            raise InvalidRequest("'tier' must not be null.")
        changes["tier"] = tier or "free"
    for field in ("webhook_url", "allowed_origins"):
        names = APP_FIELD_NAMES[field]
        if fields.present(*names):
            changes[field] = fields.raw(*names)  # the store checks and normalizes them
    return changes


# -- token revocation ------------------------------------------------------------------


@bp.post("/licenses/revoke-token")
@requires("tokens:revoke")
def revoke_token() -> Response:
    """Denylist a token id until the token's ``exp`` (plus leeway), or for the longest token
    lifetime when only the ``jti`` is given. Idempotent."""
    state = get_issuer_state()
    max_body = state.settings.max_body_bytes
    # A token lives at most its TTL; the verifiers accept it for `leeway` seconds more.
    leeway = state.verifier.leeway
    longest_deny = LONGEST_TTL + leeway
    fields = Fields(read_json_body(max_body))
    jti = fields.string("jti", max_length=limits.JTI)
    token = fields.string(*TOKEN_FIELDS, max_length=max_body)
    if jti is None and token is None:
        raise InvalidRequest("'jti' or 'license_token' is required.")
    if token is None:  # a bare jti says nothing of its app
        require_unrestricted("revoke a token by its jti alone; send the token")
    ttl: float = longest_deny
    app_id: str | None = None
    if token is not None:
        # The token need not be valid to be revoked: only its jti and exp are used, and
        # the denylist entry is bounded by the longest lifetime any token can have.
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidRequest("'license_token' is not a JWT.") from None
        token_jti = claims.get("jti")
        if not isinstance(token_jti, str) or not token_jti or len(token_jti) > limits.JTI:
            raise InvalidRequest("The token has no usable 'jti'.")
        if jti is not None and jti != token_jti:
            raise InvalidRequest("'jti' does not match the token's jti.")
        audiences = _signed_audiences(state, token)
        own = current_api_key().app_id
        if own is not None and own not in audiences:
            raise NotFound("The token is not for this key's app.")
        app_id = own if own is not None else _one_audience(audiences)
        jti = token_jti
        exp = claims.get("exp")
        if isinstance(exp, int) and not isinstance(exp, bool):
            ttl = min(longest_deny, exp + leeway - time.time())
    assert jti is not None
    now = time.time()
    token_service.revoke_token(
        state, request_actor(), jti=jti, until=now + ttl, now=now, app_id=app_id
    )
    return json_response({"revoked": True, "jti": jti}, 200, NO_STORE)


def _signed_audiences(state: IssuerState, token: str) -> list[Any]:
    """The ``aud`` of a token this issuer signed (RS256, RFC 7515), expired or not; ``[]``
    for any other token, so an app-limited key cannot name its own app in a forged token."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = state.verifier.keys.current().get(kid) if isinstance(kid, str) else None
        if key is None:
            return []
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError:
        return []
    aud = claims.get("aud")
    return aud if isinstance(aud, list) else [aud]


def _one_audience(audiences: list[Any]) -> str | None:
    """The app of a signed token with one string ``aud`` (for the audit event), else None."""
    if len(audiences) == 1 and isinstance(audiences[0], str):
        return audiences[0]
    return None


# -- apps ------------------------------------------------------------------------------


@bp.post("/apps")
@requires("apps:write")
def create_app() -> Response:
    """Create an app (``webhook_url`` and ``allowed_origins`` as LicenseChain's SDKs send
    them); 201 with the app object."""
    state = get_issuer_state()
    changes = app_changes(Fields(read_json_body(state.settings.max_body_bytes)), creating=True)
    require_unrestricted("create apps")
    app = app_service.create_app(state, request_actor(), **changes)
    return json_response(app_json(app), 201)


@bp.get("/apps")
@requires("apps:read")
def list_apps() -> Response:
    """One page of apps (``page``, ``limit``); an app-limited key sees its own app."""
    store = get_issuer_state().store
    number = query_int("page", 1, limits.PAGE)
    size = query_int("limit", limits.PAGE_SIZE, limits.PAGE_SIZE)
    own = app_filter(None)
    apps = store.apps.list(page=number, limit=size, app_id=own)
    return json_response(
        {
            "apps": [app_json(app) for app in apps],
            "total": store.apps.count(app_id=own),
            "page": number,
            "limit": size,
        }
    )


def _visible_app(state: IssuerState, app_id: str) -> AppRecord:
    check_app_visible(app_id)
    app = state.store.apps.get(app_id)
    if app is None:
        raise NotFound("App not found.")
    return app


@bp.get("/apps/<app_id>")
@requires("apps:read")
def get_app(app_id: str) -> Response:
    """One app, or 404."""
    return json_response(app_json(_visible_app(get_issuer_state(), app_id)))


@bp.patch("/apps/<app_id>")
@requires("apps:write")
def update_app(app_id: str) -> Response:
    """Change the members present; the slug stays."""
    state = get_issuer_state()
    changes = app_changes(Fields(read_json_body(state.settings.max_body_bytes)), creating=False)
    _visible_app(state, app_id)
    app = app_service.update_app(state, request_actor(), app_id, **changes)
    return json_response(app_json(app))


@bp.delete("/apps/<app_id>")
@requires("apps:write")
def delete_app(app_id: str) -> Response:
    """Delete an app whose licenses are all revoked (409 otherwise); its app keys are
    revoked with it."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    check_app_visible(app_id)
    app = app_service.delete_app(state, request_actor(), app_id)
    return json_response({**app_json(app), "deleted": True})


@bp.post("/apps/<app_id>/regenerate-key")
@requires("api-keys:write")
def regenerate_app_key(app_id: str) -> Response:
    """A new API key limited to the app, shown once (201); the app's previous keys are
    revoked in the same transaction."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    app = _visible_app(state, app_id)
    caller = current_api_key()
    beyond = [scope for scope in APP_KEY_SCOPES if not grants(caller, scope)]
    if beyond:
        raise InsufficientScope(
            "An API key can only grant scopes it holds: " + ", ".join(beyond) + "."
        )
    with state.store.unit_of_work(request_actor()) as unit:
        record, plaintext, revoked = state.store.api_keys.replace_app_key(
            app.id, f"{app.name[:150]} (app key)", APP_KEY_SCOPES, environment=caller.environment
        )
        data = {"scopes": list(record.scopes), "revokedKeyIds": revoked}
        unit.record(Change("api_key.create", target=record.id, app_id=app.id, data=data))
    body = {
        **api_key_json(record),
        "appId": app.id,
        "key": plaintext,
        "apiKey": plaintext,
        "revokedKeyIds": revoked,
    }
    return json_response(body, 201, NO_STORE)


# -- analytics -------------------------------------------------------------------------


def _app_report(state: IssuerState) -> tuple[str | None, dict[str, Any]]:
    """The ``app_id`` filter (404 for an unknown app) and the verification report of the
    ``period`` asked for."""
    period = query_period()
    app_id = app_filter(query_app_id())
    if app_id is not None and state.store.apps.get(app_id) is None:
        raise NotFound("App not found.")
    report = verification_report(state.store.verification_tally, period, app_id=app_id)
    return app_id, {"appId": app_id, **report}


@bp.get("/analytics/stats")
@requires("licenses:read")
def analytics_stats() -> Response:
    """Verifications by outcome per day, with the license counts and the number of apps."""
    state = get_issuer_state()
    app_id, report = _app_report(state)
    counts = {
        "licenses": state.store.licenses.stats(app_id=app_id),
        "apps": state.store.apps.count(app_id=app_id),
    }
    return json_response({**report, **counts})


@bp.get("/analytics/usage")
@requires("licenses:read")
def analytics_usage() -> Response:
    """Verifications by outcome per day, of every app or of ``app_id``."""
    return json_response(_app_report(get_issuer_state())[1])


# -- signing keys ----------------------------------------------------------------------


@bp.post("/signing-keys/rotate")
@requires("keys:rotate")
def rotate_keys() -> Response:
    """A new active signing key; the previous one stays in the JWKS until it expires."""
    state = get_issuer_state()
    require_unrestricted("rotate the signing key")
    result = rotate_signing_key(state, request_actor())
    return json_response(
        {
            "kid": result.kid,
            "previousKid": result.previous_kid,
            "previousKeyExpiresAt": iso(result.previous_expires_at),
        }
    )


# -- API keys --------------------------------------------------------------------------


@bp.post("/api-keys")
@requires("api-keys:write")
def create_api_key() -> Response:
    """A new API key, shown once (201); it can grant only scopes the caller holds."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, {"name", "scopes", "environment"})
    name = fields.required_string("name", max_length=limits.NAME)
    scopes = fields.string_list("scopes", max_items=limits.SCOPES, max_length=limits.SCOPE)
    if not scopes:
        raise InvalidRequest("'scopes' must list at least one scope.")
    caller = current_api_key()
    # No privilege escalation: a key can only hand out scopes it holds itself.
    beyond = [scope for scope in scopes if not grants(caller, scope)]
    if beyond:
        raise InsufficientScope(
            "An API key can only grant scopes it holds: " + ", ".join(beyond) + "."
        )
    environment = fields.string("environment", max_length=8) or "live"
    # An app-limited key makes keys limited to the same app, never wider ones.
    with state.store.unit_of_work(request_actor()) as unit:
        record, plaintext = state.store.api_keys.create(
            name, scopes, environment=environment, app_id=caller.app_id
        )
        data = {"scopes": list(record.scopes)}
        unit.record(Change("api_key.create", target=record.id, app_id=caller.app_id, data=data))
    return json_response({**api_key_json(record), "key": plaintext}, 201, NO_STORE)
