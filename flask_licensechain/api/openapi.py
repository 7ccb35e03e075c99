"""The OpenAPI 3.1 document of the HTTP API (CONTRACT.md section 2).

``openapi_document(prefix)`` builds it for the blueprint's URL prefix; the API serves
it at ``GET {prefix}/openapi.json``. It is the contract in machine-readable form:
tests/test_openapi.py runs schemathesis against the app with it, so every status
code, header and body shape written here must be what the endpoints really send.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from ..core.contract import LICENSE_STATUSES, SELLER_TIERS, TTL_BY_VT, Reason

Schema = dict[str, Any]

API_KEY_SCOPES = (
    "apps:read",
    "apps:write",
    "licenses:read",
    "licenses:write",
    "tokens:revoke",
    "keys:rotate",
    "api-keys:write",
    "audit:read",
    "webhooks:write",
    "*",
)

#: status code -> (contract error code, description)
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "Bad JSON, or a missing or mistyped field."),
    401: ("unauthorized", "Missing or invalid API key."),
    403: ("insufficient_scope", "The API key lacks the scope this endpoint needs."),
    404: ("not_found", "No such resource."),
    409: ("conflict", "The request conflicts with the current state."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "The request body must be application/json."),
    429: ("rate_limited", "Too many requests; retry after `Retry-After` seconds."),
    503: ("unavailable", "A dependency (store, denylist) is unreachable."),
}

VERIFY_REASONS = (
    Reason.LICENSE_NOT_FOUND,
    Reason.APP_MISMATCH,
    Reason.LICENSE_EXPIRED,
    Reason.LICENSE_SUSPENDED,
    Reason.LICENSE_REVOKED,
    Reason.HARDWARE_ID_MISMATCH,
    Reason.HARDWARE_ID_REQUIRED,
)
INTROSPECT_REASONS = (
    Reason.TOKEN_INVALID,
    Reason.TOKEN_EXPIRED,
    Reason.TOKEN_REVOKED,
    Reason.LICENSE_NOT_FOUND,
    Reason.LICENSE_EXPIRED,
    Reason.LICENSE_SUSPENDED,
    Reason.LICENSE_REVOKED,
)


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Schema:
    return _ref("schemas", name)


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


STRING: Schema = {"type": "string"}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
TIMESTAMP: Schema = {"type": "integer", "description": "Unix seconds."}
LICENSE_STATUS: Schema = {"type": "string", "enum": list(LICENSE_STATUSES)}
VT: Schema = {"type": "string", "enum": list(TTL_BY_VT)}
TIER: Schema = {"type": "string", "enum": list(SELLER_TIERS)}
#: Free text the client chooses (names, plans, hardware ids). No NUL: the stores refuse it.
TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\x00]*$"}
LONG_TEXT: Schema = {"type": "string", "maxLength": 2000, "pattern": "^[^\\x00]*$"}
FEATURES: Schema = {"type": "array", "items": TEXT, "maxItems": 100}


def _alias_group(*names: str) -> Schema:
    """At least one of the alias names is present."""
    return {"anyOf": [{"required": [n]} for n in names]}


def _schemas() -> dict[str, Schema]:
    error_codes = [code for code, _ in ERRORS.values()]
    token_claims = {
        "iss": STRING,
        "sub": STRING,
        "aud": {"anyOf": [STRING, {"type": "array", "items": STRING}]},
        "iat": TIMESTAMP,
        "nbf": TIMESTAMP,
        "exp": TIMESTAMP,
        "jti": STRING,
        "token_use": {"const": "licensechain_license_v1"},
        "lc_vt": VT,
        "seller_tier": TIER,
        "hw_bound": {"type": "boolean"},
        "plan": _nullable(STRING),
        "features": {"type": "array", "items": STRING},
        "license_exp": TIMESTAMP,
    }
    return {
        "Error": _obj(
            ["error", "message", "request_id"],
            {
                "error": {"type": "string", "enum": error_codes},
                "message": STRING,
                "request_id": STRING,
            },
            description="The body of every error response.",
        ),
        # -- public --------------------------------------------------------------
        "VerifyRequest": {
            **_obj(
                [],
                {
                    "key": TEXT,
                    "licenseKey": TEXT,
                    "license_key": TEXT,
                    "hwuid": TEXT,
                    "hardwareId": TEXT,
                    "app_id": TEXT,
                    "appId": TEXT,
                },
                description="`key` (aliases `licenseKey`, `license_key`), optional `hwuid` "
                "(alias `hardwareId`) and `app_id` (alias `appId`).",
            ),
            **_alias_group("key", "licenseKey", "license_key"),
        },
        "ValidateHardwareRequest": {
            **_obj(
                [],
                {
                    "key": TEXT,
                    "licenseKey": TEXT,
                    "license_key": TEXT,
                    "hwuid": TEXT,
                    "hardwareId": TEXT,
                    "app_id": TEXT,
                    "appId": TEXT,
                },
                description="Both the key and the hardware id are required.",
            ),
            "allOf": [
                _alias_group("key", "licenseKey", "license_key"),
                _alias_group("hwuid", "hardwareId"),
            ],
        },
        "VerifyMetadata": _obj(
            ["ipAddress", "userAgent", "verifiedAt"],
            {
                "ipAddress": _nullable(STRING),
                "userAgent": _nullable(STRING),
                "verifiedAt": DATE_TIME,
            },
        ),
        "VerifyValid": _obj(
            [
                "valid",
                "status",
                "id",
                "appId",
                "plan",
                "features",
                "expiresAt",
                "email",
                "verificationType",
                "hwBound",
                "metadata",
                "license_token",
                "license_token_expires_at",
                "license_jwks_uri",
            ],
            {
                "valid": {"const": True},
                "status": {"const": "ACTIVE"},
                "id": STRING,
                "appId": STRING,
                "plan": _nullable(STRING),
                "features": {"type": "array", "items": STRING},
                "expiresAt": _nullable(DATE_TIME),
                "email": _nullable(STRING),
                "verificationType": VT,
                "hwBound": {"type": "boolean"},
                "metadata": _schema("VerifyMetadata"),
                "license_token": {"type": "string", "description": "An RS256 license JWT."},
                "license_token_expires_at": DATE_TIME,
                "license_jwks_uri": {"type": "string", "format": "uri"},
            },
        ),
        "VerifyInvalid": _obj(
            ["valid", "reason"],
            {
                "valid": {"const": False},
                "reason": {"type": "string", "enum": list(VERIFY_REASONS)},
                "status": LICENSE_STATUS,
            },
            description="A negative outcome; never carries a token.",
        ),
        "VerifyResponse": {"oneOf": [_schema("VerifyValid"), _schema("VerifyInvalid")]},
        "Jwk": _obj(
            ["kty", "kid", "use", "alg", "n", "e"],
            {
                "kty": {"const": "RSA"},
                "kid": STRING,
                "use": {"const": "sig"},
                "alg": {"const": "RS256"},
                "n": STRING,
                "e": STRING,
            },
        ),
        "Jwks": _obj(
            ["keys"], {"keys": {"type": "array", "items": _schema("Jwk"), "minItems": 1}}
        ),
        "IntrospectRequest": {
            **_obj(
                [],
                {"license_token": {"type": "string"}, "token": {"type": "string"}},
                description="`license_token` (alias `token`).",
            ),
            **_alias_group("license_token", "token"),
        },
        "IntrospectActive": _obj(
            [
                "active",
                "iss",
                "sub",
                "aud",
                "iat",
                "exp",
                "jti",
                "token_use",
                "lc_vt",
                "features",
                "status",
            ],
            {
                "active": {"const": True},
                **token_claims,
                "status": {**LICENSE_STATUS, "description": "The license's live status."},
            },
        ),
        "IntrospectInactive": _obj(
            ["active", "reason"],
            {
                "active": {"const": False},
                "reason": {"type": "string", "enum": list(INTROSPECT_REASONS)},
            },
        ),
        "IntrospectResponse": {
            "oneOf": [_schema("IntrospectActive"), _schema("IntrospectInactive")]
        },
        "HealthOk": _obj(
            ["status", "version", "timestamp"],
            {"status": {"const": "ok"}, "version": STRING, "timestamp": DATE_TIME},
        ),
        "HealthDegraded": _obj(
            ["status"],
            {"status": {"const": "degraded"}, "version": STRING, "timestamp": DATE_TIME},
            description="Names the failing dependency (store, redis).",
        ),
        # -- authenticated -------------------------------------------------------
        "RevokeTokenRequest": {
            **_obj(
                [],
                {"jti": TEXT, "license_token": {"type": "string"}, "token": {"type": "string"}},
                description="Either `jti` or `license_token` (alias `token`).",
            ),
            **_alias_group("jti", "license_token", "token"),
        },
        "RevokeTokenResponse": _obj(
            ["revoked", "jti"], {"revoked": {"const": True}, "jti": STRING}
        ),
        "AppCreate": _obj(
            ["name"],
            {"name": TEXT, "description": _nullable(LONG_TEXT), "tier": TIER},
        ),
        "App": _obj(
            [
                "id",
                "name",
                "slug",
                "description",
                "tier",
                "verificationType",
                "createdAt",
                "updatedAt",
            ],
            {
                "id": STRING,
                "name": STRING,
                "slug": STRING,
                "description": _nullable(STRING),
                "tier": TIER,
                "verificationType": VT,
                "createdAt": DATE_TIME,
                "updatedAt": DATE_TIME,
            },
        ),
        "AppList": _obj(["apps"], {"apps": {"type": "array", "items": _schema("App")}}),
        "LicenseCreate": _obj(
            [],
            {
                "plan": _nullable(TEXT),
                "issuedTo": _nullable(TEXT),
                "issuedEmail": _nullable(TEXT),
                "expiresAt": _nullable(DATE_TIME),
                "features": FEATURES,
                "metadata": {"type": "object"},
                "maxDevices": {"type": "integer", "minimum": 1, "maximum": 10000},
                "requireHwuid": {"type": "boolean"},
            },
        ),
        "LicenseUpdate": _obj(
            [],
            {
                "plan": _nullable(TEXT),
                "issuedTo": _nullable(TEXT),
                "issued_to": _nullable(TEXT),
                "issuedEmail": _nullable(TEXT),
                "issued_email": _nullable(TEXT),
                "expiresAt": _nullable(DATE_TIME),
                "expires_at": _nullable(DATE_TIME),
                "features": FEATURES,
                "metadata": {"type": "object"},
                "maxDevices": {"type": "integer", "minimum": 1, "maximum": 10000},
                "max_devices": {"type": "integer", "minimum": 1, "maximum": 10000},
                "requireHwuid": {"type": "boolean"},
                "require_hwuid": {"type": "boolean"},
            },
            description="Partial update; camelCase or snake_case field names.",
        ),
        "RevokeLicenseRequest": _obj([], {"reason": _nullable(LONG_TEXT)}),
        "ExtendLicenseRequest": {
            **_obj(
                [],
                {"expiresAt": _nullable(DATE_TIME), "expires_at": _nullable(DATE_TIME)},
                description="`expiresAt` (alias `expires_at`); null makes it perpetual.",
            ),
            **_alias_group("expiresAt", "expires_at"),
        },
        "Device": _obj(
            ["hwuid", "boundAt", "lastSeenAt"],
            {"hwuid": STRING, "boundAt": DATE_TIME, "lastSeenAt": DATE_TIME},
        ),
        "License": _obj(
            [
                "id",
                "appId",
                "key",
                "licenseKey",
                "plan",
                "status",
                "issuedTo",
                "issuedEmail",
                "email",
                "expiresAt",
                "features",
                "metadata",
                "maxDevices",
                "requireHwuid",
                "devices",
                "createdAt",
                "updatedAt",
            ],
            {
                "id": STRING,
                "appId": STRING,
                "key": {"type": "string", "pattern": "^LC-[A-Z0-9]{6}-[A-Z0-9]{6}-[A-Z0-9]{6}$"},
                "licenseKey": {"type": "string"},
                "plan": _nullable(STRING),
                "status": LICENSE_STATUS,
                "issuedTo": _nullable(STRING),
                "issuedEmail": _nullable(STRING),
                "email": _nullable(STRING),
                "expiresAt": _nullable(DATE_TIME),
                "features": {"type": "array", "items": STRING},
                "metadata": {"type": "object"},
                "maxDevices": {"type": "integer", "minimum": 1},
                "requireHwuid": {"type": "boolean"},
                "devices": {"type": "array", "items": _schema("Device")},
                "createdAt": DATE_TIME,
                "updatedAt": DATE_TIME,
            },
        ),
        "LicenseList": _obj(
            ["licenses", "total", "page", "limit"],
            {
                "licenses": {"type": "array", "items": _schema("License")},
                "total": {"type": "integer", "minimum": 0},
                "page": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1},
            },
        ),
        "RotateResponse": _obj(
            ["kid"],
            {"kid": {"type": "string", "description": "The new active key's kid."}},
        ),
    }


def _headers() -> dict[str, Schema]:
    return {
        "X-Request-ID": {
            "description": "Echoes the client's sane X-Request-ID, else a generated one.",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        },
        "NoStore": {
            "description": "Responses that carry a token are not cached.",
            "schema": {"type": "string", "pattern": "no-store"},
        },
        "JwksCacheControl": {
            "required": True,
            "schema": {"type": "string", "pattern": "max-age=300"},
        },
        "RetryAfter": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        },
        "WWWAuthenticate": {
            "description": 'RFC 6750 challenge: `Bearer realm="licensechain"`.',
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer realm=\"licensechain\""},
        },
        "RateLimitLimit": {"schema": {"type": "integer"}},
        "RateLimitRemaining": {"schema": {"type": "integer"}},
        "RateLimitReset": {"schema": {"type": "number"}},
    }


def _responses() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for status, (code, text) in ERRORS.items():
        headers: dict[str, Schema] = {"X-Request-ID": _ref("headers", "X-Request-ID")}
        if status in (401, 403):
            headers["WWW-Authenticate"] = _ref("headers", "WWWAuthenticate")
        if status == 429:
            headers["Retry-After"] = _ref("headers", "RetryAfter")
        body = {"allOf": [_schema("Error"), {"properties": {"error": {"const": code}}}]}
        out[code] = {
            "description": text,
            "headers": headers,
            "content": {"application/json": {"schema": body}},
        }
    return out


def _json(status_text: str, schema: Schema, **headers: Schema) -> Schema:
    return {
        "description": status_text,
        "headers": {"X-Request-ID": _ref("headers", "X-Request-ID"), **headers},
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): _ref("responses", ERRORS[s][0]) for s in statuses}


def _body(name: str, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": _schema(name)}}}


_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": _ref("headers", "RateLimitLimit"),
    "X-RateLimit-Remaining": _ref("headers", "RateLimitRemaining"),
    "X-RateLimit-Reset": _ref("headers", "RateLimitReset"),
}
_BODY_ERRORS = (400, 413, 415)
_PUBLIC_ERRORS = (*_BODY_ERRORS, 429, 503)
_AUTH_ERRORS = (401, 403, 503)


def _public_post(summary: str, request: str, response: str, desc: str) -> Schema:
    return {
        "summary": summary,
        "description": desc,
        "tags": ["public"],
        "security": [],
        "requestBody": _body(request),
        "responses": {
            "200": _json(
                "The outcome.",
                _schema(response),
                **{"Cache-Control": _ref("headers", "NoStore")},
                **_RATE_LIMIT_HEADERS,
            ),
            **_errors(*_PUBLIC_ERRORS),
        },
    }


def _admin(
    summary: str,
    scope: str,
    responses: dict[str, Schema],
    *,
    errors: tuple[int, ...] = (),
    body: str | None = None,
    parameters: list[Schema] | None = None,
    body_required: bool = True,
) -> Schema:
    op: Schema = {
        "summary": summary,
        "description": f"Needs an API key with scope `{scope}` (or `*`).",
        "tags": ["admin"],
        "security": [{"bearerAuth": [scope]}],
        "responses": {**responses, **_errors(*sorted({*_AUTH_ERRORS, *errors}))},
    }
    if body is not None:
        op["requestBody"] = _body(body, body_required)
        op["responses"].update(_errors(*_BODY_ERRORS))
    if parameters:
        op["parameters"] = parameters
    return op


def _path_param(name: str, description: str) -> Schema:
    # No "/" (it would change the route) and no NUL; ids and keys are short.
    schema = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^/\\x00]+$"}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _paths(prefix: str) -> dict[str, Schema]:
    app_id = _path_param("appId", "App id.")
    license_id = _path_param("licenseId", "License id.")
    license_ref = _path_param("licenseRef", "License id or license key.")
    hwuid = _path_param("hwuid", "Bound hardware id.")
    license_json = _schema("License")

    def status_change(summary: str, body: str | None = None, required: bool = False) -> Schema:
        return {
            "patch": _admin(
                summary,
                "licenses:write",
                {"200": _json("The updated license.", license_json)},
                errors=(404, 409),
                body=body,
                body_required=required,
                parameters=[license_id],
            )
        }

    p = prefix.rstrip("/")
    return {
        f"{p}/licenses/verify": {
            "post": _public_post(
                "Verify a license key and get a license token",
                "VerifyRequest",
                "VerifyResponse",
                "Always 200 for a verification outcome. Binds the hardware id when a slot is "
                "free. Rate limited per client IP and per license key.",
            )
        },
        f"{p}/licenses/validate-hardware": {
            "post": _public_post(
                "Check (and bind) a hardware id for a license key",
                "ValidateHardwareRequest",
                "VerifyResponse",
                "Same binding rules and response shape as verify; `hwBound: true` on success.",
            )
        },
        f"{p}/licenses/introspect": {
            "post": _public_post(
                "Introspect a license token",
                "IntrospectRequest",
                "IntrospectResponse",
                "Checks the signature and claims, the denylist, then the live license status. "
                "503 when the denylist cannot be asked: never `active: true` unchecked.",
            )
        },
        f"{p}/licenses/jwks": {
            "get": {
                "summary": "The public signing keys (JWKS)",
                "tags": ["public"],
                "security": [],
                "responses": {
                    "200": _json(
                        "The active key and the retired keys whose tokens may still be live.",
                        _schema("Jwks"),
                        **{"Cache-Control": _ref("headers", "JwksCacheControl")},
                    ),
                    **_errors(429, 503),
                },
            }
        },
        f"{p}/health": {
            "get": {
                "summary": "Health of the server and its dependencies",
                "tags": ["public"],
                "security": [],
                "responses": {
                    "200": _json("Healthy.", _schema("HealthOk")),
                    "503": _json("A dependency is down.", _schema("HealthDegraded")),
                },
            }
        },
        f"{p}/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["public"],
                "security": [],
                "responses": {"200": _json("The OpenAPI document.", {"type": "object"})},
            }
        },
        f"{p}/licenses/revoke-token": {
            "post": _admin(
                "Revoke one license token",
                "tokens:revoke",
                {"200": _json("Revoked (idempotent).", _schema("RevokeTokenResponse"))},
                body="RevokeTokenRequest",
            )
        },
        f"{p}/apps": {
            "post": _admin(
                "Create an app",
                "apps:write",
                {"201": _json("The new app.", _schema("App"))},
                errors=(409,),
                body="AppCreate",
            ),
            "get": _admin(
                "List apps", "apps:read", {"200": _json("All apps.", _schema("AppList"))}
            ),
        },
        f"{p}/apps/{{appId}}": {
            "get": _admin(
                "One app",
                "apps:read",
                {"200": _json("The app.", _schema("App"))},
                errors=(404,),
                parameters=[app_id],
            )
        },
        f"{p}/apps/{{appId}}/licenses": {
            "post": _admin(
                "Create a license for an app",
                "licenses:write",
                {"201": _json("The new license.", license_json)},
                errors=(404,),
                body="LicenseCreate",
                body_required=False,
                parameters=[app_id],
            ),
            "get": _admin(
                "Licenses of an app",
                "licenses:read",
                {"200": _json("A page of licenses.", _schema("LicenseList"))},
                errors=(400, 404),
                parameters=[app_id, *_page_params()],
            ),
        },
        f"{p}/licenses": {
            "get": _admin(
                "Search licenses",
                "licenses:read",
                {"200": _json("A page of licenses.", _schema("LicenseList"))},
                errors=(400,),
                parameters=[
                    {"name": "app_id", "in": "query", "schema": TEXT},
                    {"name": "status", "in": "query", "schema": LICENSE_STATUS},
                    *_page_params(),
                ],
            )
        },
        f"{p}/licenses/{{licenseRef}}": {
            "get": _admin(
                "One license, by id or key",
                "licenses:read",
                {"200": _json("The license.", license_json)},
                errors=(404,),
                parameters=[license_ref],
            ),
            "patch": _admin(
                "Update a license",
                "licenses:write",
                {"200": _json("The updated license.", license_json)},
                errors=(404, 409),
                body="LicenseUpdate",
                parameters=[license_ref],
            ),
        },
        f"{p}/licenses/{{licenseId}}/revoke": status_change(
            "Revoke a license (denylists its outstanding tokens)", "RevokeLicenseRequest"
        ),
        f"{p}/licenses/{{licenseId}}/suspend": status_change(
            "Suspend a license (denylists its outstanding tokens)"
        ),
        f"{p}/licenses/{{licenseId}}/activate": status_change(
            "Reactivate a license (lifts the denylist entry)"
        ),
        f"{p}/licenses/{{licenseId}}/extend": status_change(
            "Set a new expiry", "ExtendLicenseRequest", required=True
        ),
        f"{p}/licenses/{{licenseId}}/devices/{{hwuid}}": {
            "delete": _admin(
                "Release a device slot",
                "licenses:write",
                {"200": _json("The license without that device.", license_json)},
                errors=(404,),
                parameters=[license_id, hwuid],
            )
        },
        f"{p}/signing-keys/rotate": {
            "post": _admin(
                "Rotate the signing key",
                "keys:rotate",
                {"200": _json("The new active key.", _schema("RotateResponse"))},
            )
        },
    }


def _page_params() -> list[Schema]:
    return [
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
        },
    ]


@lru_cache(maxsize=8)
def _build(prefix: str) -> Schema:
    from .. import __version__

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LicenseChain license server",
            "version": __version__,
            "description": "License verification and short-lived RS256 license tokens. "
            "Errors are `{error, message, request_id}`; every response carries X-Request-ID.",
        },
        "paths": _paths(prefix),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "headers": _headers(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`lc_live_...` or `lc_test_...`) with the "
                    "scopes the operation names: " + ", ".join(API_KEY_SCOPES) + ".",
                }
            },
        },
    }


def openapi_document(prefix: str = "/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document for an API mounted at ``prefix`` (a fresh copy)."""
    return copy.deepcopy(_build(prefix))
