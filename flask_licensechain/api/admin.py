"""Authenticated endpoints other than licenses: apps, token revocation, key rotation, API keys."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import jwt
from flask import Blueprint, Response

from ..core.contract import LONGEST_TTL
from ..core.errors import InsufficientScope, InvalidRequest, NotFound
from .analytics_report import query_period, verification_report
from .auth import (
    app_filter,
    check_app_visible,
    current_api_key,
    grants,
    require_unrestricted,
    scope_guard,
)
from .body import Fields, read_json_body, reject_unknown
from .cors import OriginAllowList
from .http import NO_STORE, json_response
from .query import query_app_id, query_int
from .serialize import api_key_json, app_json, iso

if TYPE_CHECKING:
    from ..extension import LicenseChainState
    from ..store import Store

log = logging.getLogger("licensechain.api")

MAX_JTI_LENGTH: Final = 256
MAX_NAME_LENGTH: Final = 200
MAX_DESCRIPTION_LENGTH: Final = 2000
MAX_APPS_PAGE: Final = 1_000_000
MAX_APPS_PAGE_SIZE: Final = 100
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
        changes["name"] = fields.required_string("name", max_length=MAX_NAME_LENGTH)
    if fields.present("description"):
        changes["description"] = fields.string(
            "description", max_length=MAX_DESCRIPTION_LENGTH, allow_empty=True
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


def audit(store: Store, action: str, target: str | None, **data: Any) -> None:
    """Record who did what. Best effort: the change itself is already committed, and a
    failed audit write must not turn it into an error (or tempt the client to retry it)."""
    try:
        store.audit.record(action, actor=current_api_key().id, target=target, data=data)
    except Exception as exc:  # the store may be briefly unavailable
        log.warning("could not record audit event %s on %s: %s", action, target, exc)


def register_admin_routes(
    bp: Blueprint, state: LicenseChainState, origins: OriginAllowList
) -> None:
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
        if token is None:  # a bare jti says nothing of its app
            require_unrestricted("revoke a token by its jti alone; send the token")
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
            aud = claims.get("aud")
            audiences = aud if isinstance(aud, list) else [aud]
            own = current_api_key().app_id
            if own is not None and own not in audiences:
                raise NotFound("The token is not for this key's app.")
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
        changes = app_changes(Fields(read_json_body(max_body)), creating=True)
        require_unrestricted("create apps")
        app = store.apps.create(**changes)
        origins.invalidate()
        audit(store, "app.create", app.id, name=app.name, tier=app.tier)
        return json_response(app_json(app), 201)

    @bp.get("/apps")
    @requires("apps:read")
    def list_apps() -> Response:
        number = query_int("page", 1, MAX_APPS_PAGE)
        size = query_int("limit", MAX_APPS_PAGE_SIZE, MAX_APPS_PAGE_SIZE)
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

    def visible_app(app_id: str) -> Any:
        check_app_visible(app_id)
        app = store.apps.get(app_id)
        if app is None:
            raise NotFound("App not found.")
        return app

    @bp.get("/apps/<app_id>")
    @requires("apps:read")
    def get_app(app_id: str) -> Response:
        return json_response(app_json(visible_app(app_id)))

    @bp.patch("/apps/<app_id>")
    @requires("apps:write")
    def update_app(app_id: str) -> Response:
        changes = app_changes(Fields(read_json_body(max_body)), creating=False)
        visible_app(app_id)
        app = store.apps.update(app_id, **changes) if changes else store.apps.get(app_id)
        if app is None:
            raise NotFound("App not found.")
        if changes:
            origins.invalidate()
            audit(store, "app.update", app.id, fields=sorted(changes))
        return json_response(app_json(app))

    @bp.delete("/apps/<app_id>")
    @requires("apps:write")
    def delete_app(app_id: str) -> Response:
        reject_unknown(Fields(read_json_body(max_body)), set())
        check_app_visible(app_id)
        app = store.apps.delete(app_id)  # 409 while a license is not revoked
        origins.invalidate()
        audit(store, "app.delete", app.id, name=app.name)
        return json_response({**app_json(app), "deleted": True})

    @bp.post("/apps/<app_id>/regenerate-key")
    @requires("api-keys:write")
    def regenerate_app_key(app_id: str) -> Response:
        reject_unknown(Fields(read_json_body(max_body)), set())
        app = visible_app(app_id)
        caller = current_api_key()
        beyond = [scope for scope in APP_KEY_SCOPES if not grants(caller, scope)]
        if beyond:
            raise InsufficientScope(
                "An API key can only grant scopes it holds: " + ", ".join(beyond) + "."
            )
        record, plaintext, revoked = store.api_keys.replace_app_key(
            app.id, f"{app.name[:150]} (app key)", APP_KEY_SCOPES, environment=caller.environment
        )
        audit(store, "api_key.create", record.id, app_id=app.id, revoked=revoked)
        body = {
            **api_key_json(record),
            "appId": app.id,
            "key": plaintext,
            "apiKey": plaintext,
            "revokedKeyIds": revoked,
        }
        return json_response(body, 201, NO_STORE)

    # -- analytics -----------------------------------------------------------------------

    def app_report() -> tuple[str | None, dict[str, Any]]:
        """The ``app_id`` filter (404 for an unknown app) and the verification report of
        the ``period`` asked for."""
        period = query_period()
        app_id = app_filter(query_app_id())
        if app_id is not None and store.apps.get(app_id) is None:
            raise NotFound("App not found.")
        report = verification_report(store.verification_tally, period, app_id=app_id)
        return app_id, {"appId": app_id, **report}

    @bp.get("/analytics/stats")
    @requires("licenses:read")
    def analytics_stats() -> Response:
        app_id, report = app_report()
        counts = {
            "licenses": store.licenses.stats(app_id=app_id),
            "apps": store.apps.count(app_id=app_id),
        }
        return json_response({**report, **counts})

    @bp.get("/analytics/usage")
    @requires("licenses:read")
    def analytics_usage() -> Response:
        return json_response(app_report()[1])

    # -- signing keys ------------------------------------------------------------------

    @bp.post("/signing-keys/rotate")
    @requires("keys:rotate")
    def rotate_keys() -> Response:
        require_unrestricted("rotate the signing key")
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
        # An app-limited key makes keys limited to the same app, never wider ones.
        record, plaintext = store.api_keys.create(
            name, scopes, environment=environment, app_id=caller.app_id
        )
        audit(store, "api_key.create", record.id, scopes=list(record.scopes))
        return json_response({**api_key_json(record), "key": plaintext}, 201, NO_STORE)
