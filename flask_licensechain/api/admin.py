"""Authenticated endpoints other than licenses and API keys: apps, token revocation, signing
key rotation, analytics."""

from __future__ import annotations

import time
from typing import Any, Final

import jwt
from flask import Response

from .. import field_limits as limits
from ..core.contract import LONGEST_TTL
from ..core.errors import InsufficientScope, InvalidRequest, NotFound
from ..serialize import app_json, iso
from ..services import apps as app_service
from ..services import tokens as token_service
from ..services.signing_keys import rotate_signing_key
from ..state import IssuerState, get_issuer_state
from ..store import AppRecord
from ..store.apps import AppScope
from .analytics_report import query_period, verification_report
from .auth import (
    app_filter,
    check_app_visible,
    current_api_key,
    request_actor,
    require_unrestricted,
    requires,
)
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response
from .names import TOKEN_FIELDS
from .query import query_app_id, query_int

#: app field -> its accepted names (snake_case as LicenseChain's SDKs send, or camelCase)
APP_FIELD_NAMES: Final = {
    "name": ("name",),
    "description": ("description",),
    "tier": ("tier",),
    "webhook_url": ("webhook_url", "webhookUrl"),
    "allowed_origins": ("allowed_origins", "allowedOrigins"),
    "mode": ("mode",),
}
_APP_NAMES: Final = {name for names in APP_FIELD_NAMES.values() for name in names}


def app_changes(fields: Fields, *, creating: bool) -> dict[str, Any]:
    """The store's keyword arguments for the app members present (``None`` clears
    ``description`` and ``webhook_url`` and empties ``allowed_origins``)."""
    reject_unknown(fields, _APP_NAMES)
    changes: dict[str, Any] = {}
    if fields.present("mode") and not creating:
        raise InvalidRequest("An app's mode is set when it is created; it cannot change.")
    if fields.present("mode"):
        changes["mode"] = fields.string("mode", max_length=8)
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
        # The token must be for an app the key may act on (one of its audiences); a key of
        # every live app may revoke any token, as it may revoke a bare jti.
        audiences = [aud for aud in _signed_audiences(state, token) if isinstance(aud, str)]
        visible = [aud for aud in audiences if _visible(aud)]
        key = current_api_key()
        if not visible and (key.app_ids is not None or key.environment != "live"):
            raise NotFound("The token is not for this key's apps.")
        app_id = visible[0] if len(visible) == 1 else None
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


def _visible(app_id: str) -> bool:
    try:
        check_app_visible(app_id)
    except NotFound:
        return False
    return True


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
    require_unrestricted("create apps", every_environment=False)
    # An app's mode defaults to the key's environment; a key never creates an app it
    # could not act on (an lc_test_ key making a live app).
    environment = current_api_key().environment
    changes["mode"] = changes.get("mode") or environment
    if changes["mode"] != environment:
        raise InsufficientScope(
            f"An lc_{environment}_ API key can only create {environment}-mode apps."
        )
    app = app_service.create_app(state, request_actor(), **changes)
    return json_response(app_json(app), 201)


@bp.get("/apps")
@requires("apps:read")
def list_apps() -> Response:
    """One page of apps (``page``, ``limit``); an app-limited key sees its own app."""
    store = get_issuer_state().store
    number = query_int("page", 1, limits.PAGE)
    size = query_int("limit", limits.PAGE_SIZE, limits.PAGE_SIZE)
    scope = app_filter(None)
    apps = store.apps.list(page=number, limit=size, scope=scope)
    return json_response(
        {
            "apps": [app_json(app) for app in apps],
            "total": store.apps.count(scope=scope),
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


# -- analytics -------------------------------------------------------------------------


def _app_report(state: IssuerState) -> tuple[AppScope, dict[str, Any]]:
    """The apps to report on (the key's, or ``app_id``: 404 when the key cannot see it)
    and the verification report of the ``period`` asked for."""
    period = query_period()
    app_id = query_app_id()
    scope = app_filter(app_id)
    report = verification_report(state.store.verification_tally, period, scope=scope)
    return scope, {"appId": app_id, **report}


@bp.get("/analytics/stats")
@requires("licenses:read")
def analytics_stats() -> Response:
    """Verifications by outcome per day, with the license counts and the number of apps."""
    state = get_issuer_state()
    scope, report = _app_report(state)
    counts = {
        "licenses": state.store.licenses.stats(scope=scope),
        "apps": state.store.apps.count(scope=scope),
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
