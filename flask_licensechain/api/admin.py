"""Authenticated endpoints other than licenses: apps, token revocation, key rotation, API keys."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import jwt
from flask import Blueprint, Response

from ..core.contract import LONGEST_TTL
from ..core.errors import InsufficientScope, InvalidRequest, NotFound
from .auth import current_api_key, grants, scope_guard
from .body import Fields, read_json_body, reject_unknown
from .http import NO_STORE, json_response
from .serialize import api_key_json, app_json, iso

if TYPE_CHECKING:
    from ..extension import LicenseChainState
    from ..store import Store

log = logging.getLogger("licensechain.api")

MAX_JTI_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 200
MAX_DESCRIPTION_LENGTH: Final = 2000


def audit(store: Store, action: str, target: str | None, **data: Any) -> None:
    """Record who did what. Best effort: the change itself is already committed, and a
    failed audit write must not turn it into an error (or tempt the client to retry it)."""
    try:
        store.audit.record(action, actor=current_api_key().id, target=target, data=data)
    except Exception as exc:  # the store may be briefly unavailable
        log.warning("could not record audit event %s on %s: %s", action, target, exc)


def register_admin_routes(bp: Blueprint, state: LicenseChainState) -> None:
    from ..issuer import rotate_signing_key

    store = state.store
    assert store is not None
    settings = state.settings
    max_body = settings.max_body_bytes
    requires = scope_guard(store.api_keys)
    # A token lives at most its TTL; the verifiers accept it for `leeway` seconds more.
    leeway = state.verifier.leeway
    longest_deny = LONGEST_TTL + leeway

    # -- token revocation ------------------------------------------------------------

    @bp.post("/licenses/revoke-token")
    @requires("tokens:revoke")
    def revoke_token() -> Response:
        fields = Fields(read_json_body(max_body))
        jti = fields.string("jti", max_length=MAX_JTI_LENGTH)
        token = fields.string("license_token", "token", max_length=max_body)
        if jti is None and token is None:
            raise InvalidRequest("'jti' or 'license_token' is required.")
        ttl: float = longest_deny
        if token is not None:
            # The token need not be valid to be revoked: only its jti and exp are used, and
            # the denylist entry is bounded by the longest lifetime any token can have.
            try:
                claims = jwt.decode(token, options={"verify_signature": False})
            except jwt.PyJWTError:
                raise InvalidRequest("'license_token' is not a JWT.") from None
            token_jti = claims.get("jti")
            if not isinstance(token_jti, str) or not token_jti or len(token_jti) > 256:
                raise InvalidRequest("The token has no usable 'jti'.")
            if jti is not None and jti != token_jti:
                raise InvalidRequest("'jti' does not match the token's jti.")
            jti = token_jti
            exp = claims.get("exp")
            if isinstance(exp, int) and not isinstance(exp, bool):
                ttl = min(longest_deny, exp + leeway - time.time())
        assert jti is not None
        if ttl > 0:
            now = time.time()
            store.revocations.revoke_token(jti, now + ttl, now, announce=state.denylist.publish)
        audit(store, "token.revoke", jti)
        return json_response({"revoked": True, "jti": jti}, 200, NO_STORE)

    # -- apps --------------------------------------------------------------------------

    @bp.post("/apps")
    @requires("apps:write")
    def create_app() -> Response:
        fields = Fields(read_json_body(max_body))
        reject_unknown(fields, {"name", "description", "tier"})
        app = store.apps.create(
            fields.required_string("name", max_length=MAX_NAME_LENGTH),
            fields.string("description", max_length=MAX_DESCRIPTION_LENGTH, allow_empty=True),
            fields.string("tier", max_length=32) or "free",
        )
        audit(store, "app.create", app.id, name=app.name, tier=app.tier)
        return json_response(app_json(app), 201)

    @bp.get("/apps")
    @requires("apps:read")
    def list_apps() -> Response:
        return json_response({"apps": [app_json(app) for app in store.apps.list()]})

    @bp.get("/apps/<app_id>")
    @requires("apps:read")
    def get_app(app_id: str) -> Response:
        app = store.apps.get(app_id)
        if app is None:
            raise NotFound("App not found.")
        return json_response(app_json(app))

    # -- signing keys ------------------------------------------------------------------

    @bp.post("/signing-keys/rotate")
    @requires("keys:rotate")
    def rotate_keys() -> Response:
        result = rotate_signing_key(state)
        audit(store, "signing_key.rotate", result.kid, previous=result.previous_kid)
        return json_response(
            {
                "kid": result.kid,
                "previousKid": result.previous_kid,
                "previousKeyExpiresAt": iso(result.previous_expires_at),
            }
        )

    # -- API keys ----------------------------------------------------------------------

    @bp.post("/api-keys")
    @requires("api-keys:write")
    def create_api_key() -> Response:
        fields = Fields(read_json_body(max_body))
        reject_unknown(fields, {"name", "scopes", "environment"})
        name = fields.required_string("name", max_length=MAX_NAME_LENGTH)
        scopes = fields.string_list("scopes", max_items=16, max_length=32)
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
        record, plaintext = store.api_keys.create(name, scopes, environment=environment)
        audit(store, "api_key.create", record.id, scopes=list(record.scopes))
        return json_response({**api_key_json(record), "key": plaintext}, 201, NO_STORE)
