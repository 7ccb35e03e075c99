"""The OpenAPI 3.1 document of the HTTP API.

``openapi_document(prefix)`` builds it for the blueprint's URL prefix; the API serves it at
``GET {prefix}/openapi.json``. It is the contract in machine-readable form:
tests/test_openapi.py runs schemathesis against the app with it, so every status code,
header and body shape written here is what the endpoints really send. Field limits are read
from ``flask_licensechain.field_limits``, the table the endpoints and the store check
against, so the document cannot drift from them.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

from flask import Response

from .. import field_limits as limits
from ..core.contract import LICENSE_STATUSES, SELLER_TIERS, TOKEN_USE, TTL_BY_VT, Reason
from ..roles import ENVIRONMENTS, ROLE_NAMES, SCOPES
from ..state import get_issuer_state
from ..store.analytics import VALID_OUTCOME
from ..store.api_keys import MAX_ROTATION_GRACE
from ..store.changes import ACTOR_KINDS
from ..store.licenses import STATS_FIELDS
from ..version import __version__
from ..webhooks.events import SUBSCRIBABLE
from . import admin, analytics_report, api_keys, audit_events, converters, cors, licenses, public
from .blueprint import bp
from .names import APP_ID_FIELDS, HWUID_FIELDS, KEY_FIELDS, TOKEN_FIELDS
from .webhooks import DESCRIPTION as WEBHOOK_DESCRIPTION
from .webhooks import MAX_EVENTS as WEBHOOK_MAX_EVENTS

Schema = dict[str, Any]

#: status code -> (contract error code, when it happens)
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "Bad JSON, or a missing, unknown or mistyped field."),
    401: ("unauthorized", "Missing or invalid API key."),
    403: ("insufficient_scope", "The API key lacks the scope this operation needs."),
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

# -- schema helpers ---------------------------------------------------------------------


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Schema:
    return _ref("schemas", name)


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _closed(properties: dict[str, Schema], **extra: Any) -> Schema:
    """A request body whose unknown members are refused with 400."""
    return _obj([], properties, additionalProperties=False, **extra)


def _text(max_length: int, min_length: int = 1) -> Schema:
    # No NUL: PostgreSQL cannot store it, so the API refuses it.
    return {
        "type": "string",
        "minLength": min_length,
        "maxLength": max_length,
        "pattern": "^[^\\x00]*$",
    }


def _aliases(names: tuple[str, ...], schema: Schema) -> dict[str, Schema]:
    return dict.fromkeys(names, schema)


def _one_of_names(*names: str) -> Schema:
    """At least one of the alias names is present."""
    return {"anyOf": [{"required": [n]} for n in names]}


def _any_case(*words: str) -> Schema:
    """One of ``words`` in any letter case (ECMA-262 patterns have no case flag)."""
    alternatives = "|".join(
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word) for word in words
    )
    return {"type": "string", "pattern": f"^(?:{alternatives})$"}


STRING: Schema = {"type": "string"}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
UNIX: Schema = {"type": "integer", "description": "Unix seconds."}
LICENSE_STATUS: Schema = {"type": "string", "enum": list(LICENSE_STATUSES)}
VT: Schema = {"type": "string", "enum": list(TTL_BY_VT)}
TIER: Schema = {"type": "string", "enum": list(SELLER_TIERS)}
TIMESTAMP_IN: Schema = {
    "anyOf": [DATE_TIME, {"type": "number", "minimum": 0, "maximum": 253402300799}],
    "description": "ISO 8601 date-time (naive means UTC) or unix seconds.",
}

# -- component schemas ------------------------------------------------------------------


def _public_schemas() -> dict[str, Schema]:
    key = _aliases(KEY_FIELDS, _text(limits.LICENSE_KEY))
    hwuid = _aliases(HWUID_FIELDS, _text(limits.HWUID))
    app_id = _aliases(APP_ID_FIELDS, _text(limits.APP_ID))
    token_claims: dict[str, Schema] = {
        "iss": STRING,
        "sub": STRING,
        "aud": {"anyOf": [STRING, {"type": "array", "items": STRING}]},
        "iat": UNIX,
        "nbf": UNIX,
        "exp": UNIX,
        "jti": STRING,
        "token_use": {"const": TOKEN_USE},
        "lc_vt": VT,
        "seller_tier": TIER,
        "hw_bound": {"type": "boolean"},
        "plan": _nullable(STRING),
        "features": {"type": "array", "items": STRING},
        "license_exp": UNIX,
    }
    return {
        "VerifyRequest": _obj(
            [],
            {**key, **hwuid, **app_id},
            description="`key` (aliases `licenseKey`, `license_key`), optional `hwuid` "
            "(alias `hardwareId`) and `app_id` (alias `appId`). Other members are ignored.",
            **_one_of_names(*KEY_FIELDS),
        ),
        "ValidateHardwareRequest": _obj(
            [],
            {**key, **hwuid, **app_id},
            description="Like verify, but the hardware id is required.",
            allOf=[_one_of_names(*KEY_FIELDS), _one_of_names(*HWUID_FIELDS)],
        ),
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
                "license",
                "expires_at",
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
                "license": _obj(
                    ["id", "key", "status", "expires_at", "features", "plan"],
                    {
                        "id": STRING,
                        "key": STRING,
                        "status": {"const": "ACTIVE"},
                        "expires_at": _nullable(DATE_TIME),
                        "features": {"type": "array", "items": STRING},
                        "plan": _nullable(STRING),
                    },
                    description="The license as LicenseChain's SDK helpers read it.",
                ),
                "expires_at": {**_nullable(DATE_TIME), "description": "The same as `expiresAt`."},
            },
        ),
        "VerifyInvalid": _obj(
            ["valid", "reason"],
            {
                "valid": {"const": False},
                "reason": {"type": "string", "enum": list(VERIFY_REASONS)},
                "status": LICENSE_STATUS,
            },
            description="A negative outcome; it never carries a token.",
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
        "Jwks": _obj(["keys"], {"keys": {"type": "array", "items": _schema("Jwk"), "minItems": 1}}),
        "IntrospectRequest": _obj(
            [],
            _aliases(TOKEN_FIELDS, {"type": "string", "minLength": 1}),
            description="`license_token` (alias `token`).",
            **_one_of_names(*TOKEN_FIELDS),
        ),
        "IntrospectActive": _obj(
            ["active", "iss", "sub", "aud", "iat", "exp", "jti", "token_use", "status"],
            {
                "active": {"const": True},
                **token_claims,
                "status": {**LICENSE_STATUS, "description": "The license's live status."},
            },
            description="The token's claims, with `status` the license's live status.",
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
        "Health": _obj(
            ["status", "version", "timestamp", "checks"],
            {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "version": STRING,
                "timestamp": DATE_TIME,
                "checks": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "enum": ["ok", "down"]},
                    "description": "Each dependency (store, denylist, ratelimit): ok or down.",
                },
                "failing": {
                    "type": "array",
                    "items": STRING,
                    "description": "The dependencies that are down (only when degraded).",
                },
            },
        ),
    }


def _license_fields() -> dict[str, Schema]:
    """The members of a license create or PATCH body: camelCase or snake_case names."""
    max_devices = {"type": "integer", "minimum": 1, "maximum": limits.MAX_DEVICES}
    features = {
        "type": "array",
        "items": _text(limits.FEATURE),
        "maxItems": limits.FEATURES,
        "description": "Feature names (duplicates are dropped).",
    }
    return {
        "plan": _nullable(_text(limits.PLAN)),
        **_aliases(("issuedTo", "issued_to"), _nullable(_text(limits.ISSUED_TO))),
        **_aliases(
            ("issuedEmail", "issued_email", "email"),
            _nullable(_text(limits.EMAIL)),
        ),
        **_aliases(
            licenses.EXPIRY_NAMES,
            {
                "anyOf": [TIMESTAMP_IN, {"type": "null"}, {"const": ""}],
                "description": "ISO 8601 date-time or unix seconds; null or an empty string: "
                "no expiry.",
            },
        ),
        "features": features,
        "metadata": {
            "type": "object",
            "description": f"Any JSON object up to {limits.METADATA_BYTES} bytes, nested at "
            f"most {limits.METADATA_DEPTH} levels deep.",
        },
        **_aliases(("maxDevices", "max_devices"), max_devices),
        **_aliases(("requireHwuid", "require_hwuid"), {"type": "boolean"}),
    }


def _app_fields() -> dict[str, Schema]:
    origins = {
        "type": "array",
        "maxItems": limits.ORIGINS,
        "items": {
            "type": "string",
            "maxLength": limits.ORIGIN,
            "description": "A web origin: scheme, host and optional port "
            "(`https://shop.example`); normalized to lower case without a default port.",
        },
        "description": "Browser origins allowed to call the public endpoints (CORS).",
    }
    webhook = {
        "anyOf": [
            {"type": "string", "format": "uri", "maxLength": limits.WEBHOOK_URL},
            {"type": "null"},
        ],
        "description": "An absolute http(s) URL without credentials; the app's events go there.",
    }
    return {
        "name": _text(limits.NAME),
        "description": _nullable(_text(limits.DESCRIPTION, 0)),
        "tier": {**TIER, "default": "free"},
        **_aliases(admin.APP_FIELD_NAMES["webhook_url"], webhook),
        **_aliases(admin.APP_FIELD_NAMES["allowed_origins"], _nullable(origins)),
    }


def _count(description: str = "") -> Schema:
    schema: Schema = {"type": "integer", "minimum": 0}
    if description:
        schema["description"] = description
    return schema


def _analytics_schemas() -> dict[str, Schema]:
    outcomes: Schema = {
        "type": "object",
        "additionalProperties": _count(),
        "description": f"Counts by outcome: `{VALID_OUTCOME}` or the verify refusal reason.",
    }
    totals = _obj(
        ["total", "valid", "invalid"],
        {"total": _count(), "valid": _count(), "invalid": _count()},
    )
    report: dict[str, Schema] = {
        "period": {"type": "string", "enum": list(analytics_report.PERIODS)},
        "from": {"type": "string", "format": "date", "description": "First day (UTC)."},
        "to": {"type": "string", "format": "date", "description": "Last day (UTC): today."},
        "days": {
            "type": "array",
            "items": _obj(
                ["date", "total", "valid", "invalid", "outcomes"],
                {
                    "date": {"type": "string", "format": "date"},
                    "total": _count(),
                    "valid": _count(),
                    "invalid": _count(),
                    "outcomes": outcomes,
                },
            ),
            "description": "Every day of the period, oldest first.",
        },
        "totals": totals,
        "outcomes": outcomes,
    }
    required = list(report)
    return {
        "LicenseStats": _obj(
            list(STATS_FIELDS),
            {name: _count() for name in STATS_FIELDS},
            description="License counts by status (EXPIRED: active with a past expiry).",
        ),
        "AnalyticsStats": _obj(
            [*required, "appId", "licenses", "apps"],
            {
                **report,
                "appId": _nullable(STRING),
                "licenses": _schema("LicenseStats"),
                "apps": _count("Apps counted."),
            },
            description="Verifications by outcome per day, with the license and app counts.",
        ),
        "AnalyticsUsage": _obj(
            [*required, "appId"],
            {**report, "appId": _nullable(STRING)},
            description="Verifications by outcome per day, of one app when `app_id` is given.",
        ),
        "LicenseAnalytics": _obj(
            [*required, "licenseId", "appId"],
            {**report, "licenseId": STRING, "appId": STRING},
            description="Verifications of one license by outcome per day.",
        ),
    }


def _admin_schemas() -> dict[str, Schema]:
    return {
        "RevokeTokenRequest": _obj(
            [],
            {
                "jti": _text(limits.JTI),
                **_aliases(TOKEN_FIELDS, {"type": "string", "minLength": 1}),
            },
            description="`jti`, or `license_token` (alias `token`); the token need not be "
            "valid, only a JWT.",
            **_one_of_names("jti", *TOKEN_FIELDS),
        ),
        "RevokeTokenResponse": _obj(
            ["revoked", "jti"], {"revoked": {"const": True}, "jti": STRING}
        ),
        "AppCreate": {
            **_closed(
                {
                    **_app_fields(),
                    "mode": {
                        "type": "string",
                        "enum": list(ENVIRONMENTS),
                        "description": "Set for good. Default: the key's environment; an "
                        "lc_test_ key makes test apps only (403 otherwise).",
                    },
                },
                description="`webhook_url` and `allowed_origins` as LicenseChain's SDKs send "
                "them (camelCase accepted too).",
            ),
            "required": ["name"],
        },
        "AppUpdate": _closed(
            {**_app_fields(), "tier": TIER},
            description="Partial update; the slug stays. null clears `description` and "
            "`webhook_url`, and empties `allowed_origins`.",
        ),
        "App": _obj(
            [
                "id",
                "name",
                "slug",
                "description",
                "tier",
                "verificationType",
                "webhookUrl",
                "allowedOrigins",
                "mode",
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
                "webhookUrl": _nullable(STRING),
                "allowedOrigins": {"type": "array", "items": STRING},
                "mode": {"type": "string", "enum": list(ENVIRONMENTS)},
                "createdAt": DATE_TIME,
                "updatedAt": DATE_TIME,
            },
        ),
        "AppDeleted": {
            "allOf": [
                _schema("App"),
                _obj(["deleted"], {"deleted": {"const": True}}),
            ],
            "description": "The app as it was; its (revoked) licenses went with it.",
        },
        "AppList": _obj(
            ["apps", "total", "page", "limit"],
            {
                "apps": {"type": "array", "items": _schema("App")},
                "total": _count(),
                "page": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1},
            },
        ),
        "AppKeyCreated": {
            "allOf": [
                _schema("ApiKeyCreated"),
                _obj(
                    ["appId", "apiKey", "revokedKeyIds"],
                    {
                        "appId": STRING,
                        "apiKey": {"type": "string", "description": "The same as `key`."},
                        "revokedKeyIds": {
                            "type": "array",
                            "items": STRING,
                            "description": "The app's previous keys, revoked now.",
                        },
                    },
                ),
            ],
            "description": f"A key limited to the app, with the scopes "
            f"{', '.join(api_keys.APP_KEY_SCOPES)}; shown once.",
        },
        "LicenseCreate": _closed(
            {
                **_license_fields(),
                **_aliases(licenses.APP_ID_NAMES, {**_nullable(STRING)}),
            },
            description="`appId` (alias `app_id`), when given, must equal the path's app id.",
        ),
        "LicenseUpdate": _closed(
            {
                **_license_fields(),
                "status": {
                    **_any_case(*licenses.SETTABLE_STATUSES),
                    "description": "Changes the status through the path of /revoke, /suspend "
                    "and /activate (the same denylist effects and 409 rules).",
                },
                "reason": _nullable(_text(limits.REASON, 0)),
            },
            description="Partial update (PATCH or PUT), camelCase or snake_case names.",
        ),
        "LicenseStatusRequest": {
            **_closed(
                {
                    "status": _any_case(*licenses.SETTABLE_STATUSES),
                    "reason": _nullable(_text(limits.REASON, 0)),
                },
                description="The new status, in any case.",
            ),
            "required": ["status"],
        },
        "DeviceRelease": _closed(
            _aliases(HWUID_FIELDS, _text(limits.HWUID)),
            description="The hardware id, when it is not given as `?hwuid=`.",
        ),
        "RevokeLicenseRequest": _closed({"reason": _nullable(_text(limits.REASON, 0))}),
        "EmptyRequest": _closed({}, description="No members (an empty body is fine too)."),
        "ExtendLicenseRequest": _closed(
            _aliases(("expiresAt", "expires_at"), _nullable(TIMESTAMP_IN)),
            description="`expiresAt` (alias `expires_at`); null makes the license perpetual.",
            **_one_of_names("expiresAt", "expires_at"),
        ),
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
                "licenseKey": {"type": "string", "description": "The same as `key`."},
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
            ["kid", "previousKid", "previousKeyExpiresAt"],
            {
                "kid": {"type": "string", "description": "The new active key."},
                "previousKid": _nullable(STRING),
                "previousKeyExpiresAt": {
                    **_nullable(DATE_TIME),
                    "description": "When the previous key leaves the JWKS.",
                },
            },
        ),
        **_api_key_schemas(),
    }


def _api_key_schemas() -> dict[str, Schema]:
    expiry = {**_nullable(TIMESTAMP_IN), "description": "When it stops working; null: never."}
    app_ids = {
        "type": "array",
        "items": _text(limits.APP_ID),
        "minItems": 1,
        "maxItems": limits.API_KEY_APPS,
        "description": "The apps it may act on (default: the creator's restriction).",
    }
    scopes = {
        "type": "array",
        "items": {"type": "string", "enum": list(SCOPES)},
        "minItems": 1,
        "maxItems": limits.SCOPES,
    }
    return {
        "ApiKeyCreate": {
            **_closed(
                {
                    "name": _text(limits.NAME),
                    "description": _nullable(_text(limits.DESCRIPTION, 0)),
                    "scopes": scopes,
                    "role": {"type": "string", "enum": list(ROLE_NAMES)},
                    "environment": {"type": "string", "enum": list(ENVIRONMENTS)},
                    **_aliases(api_keys.APP_IDS_NAMES, app_ids),
                    **_aliases(api_keys.EXPIRY_NAMES, expiry),
                },
                description="`role` or `scopes`. A key never gets more rights than its "
                "creator: no scope it lacks, no live environment from an lc_test_ key, no app "
                "outside its restriction, no longer life (else 403).",
            ),
            "required": ["name"],
        },
        "CustomerRequest": {
            **_closed(
                {
                    "email": {
                        **_text(limits.EMAIL),
                        "pattern": r"^\s*[^@\s]+@[^@\s]+\s*$",
                        "description": "One whole address (400 otherwise).",
                    },
                    "appId": _text(limits.APP_ID),
                }
            ),
            "required": ["email"],
            "description": "Without `appId`: every app the key sees; an unrestricted live "
            "key also reaches the records tied to no app.",
        },
        "CustomerExport": _obj(
            ["format", "version", "exportedAt", "subject", "licenses", "auditEvents"],
            {
                "format": {"const": "licensechain.customer-export"},
                "version": {"const": 1},
                "exportedAt": DATE_TIME,
                "subject": _obj(["email"], {"email": STRING}),
                "appId": _nullable(STRING),
                "appIds": _nullable({"type": "array", "items": STRING}),
                "licenses": {"type": "array", "items": _schema("License")},
                "verificationMetadata": {"type": "object"},
                "auditEvents": {"type": "array", "items": {"type": "object"}},
                "webhookDeliveries": {"type": "array", "items": {"type": "object"}},
                "sources": {"type": "array", "items": STRING},
            },
            description="Every record about the customer (README, Data protection).",
        ),
        "CustomerErasure": _obj(
            [
                "erased",
                "pseudonym",
                "licenses",
                "personalRows",
                "auditEvents",
                "webhookDeliveries",
                "devices",
            ],
            {
                "erased": {"const": True},
                "pseudonym": {"type": "string", "pattern": "^erased-[0-9a-f]{32}$"},
                "licenses": {"type": "integer", "minimum": 0},
                "personalRows": {"type": "integer", "minimum": 0},
                "auditEvents": {"type": "integer", "minimum": 0},
                "webhookDeliveries": {"type": "integer", "minimum": 0},
                "devices": {"type": "integer", "minimum": 0},
            },
        ),
        "ApiKeyUpdate": _closed(
            {
                "name": _text(limits.NAME),
                "description": _nullable(_text(limits.DESCRIPTION, 0)),
                **_aliases(api_keys.EXPIRY_NAMES, expiry),
            },
            description="Partial update.",
        ),
        "ApiKeyRotate": _closed(
            _aliases(
                api_keys.GRACE_NAMES,
                {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": int(MAX_ROTATION_GRACE.total_seconds()),
                    "default": 86400,
                    "description": "Seconds the previous secret keeps working (0: none).",
                },
            ),
        ),
        "ApiKey": _obj(
            [
                "id",
                "name",
                "description",
                "prefix",
                "environment",
                "role",
                "scopes",
                "appIds",
                "status",
                "createdAt",
                "expiresAt",
                "lastUsedAt",
                "lastUsedIp",
                "usageCount",
                "revokedAt",
            ],
            {
                "id": STRING,
                "name": STRING,
                "description": _nullable(STRING),
                "prefix": STRING,
                "environment": {"type": "string", "enum": list(ENVIRONMENTS)},
                "role": _nullable({"type": "string", "enum": list(ROLE_NAMES)}),
                "scopes": {"type": "array", "items": STRING},
                "appIds": _nullable({"type": "array", "items": STRING}),
                "appId": _nullable(STRING),
                "status": {"type": "string", "enum": ["active", "revoked", "expired"]},
                "createdAt": DATE_TIME,
                "expiresAt": _nullable(DATE_TIME),
                "lastUsedAt": _nullable(DATE_TIME),
                "lastUsedIp": _nullable(STRING),
                "usageCount": {"type": "integer", "minimum": 0},
                "revokedAt": _nullable(DATE_TIME),
                "previousKeyExpiresAt": _nullable(DATE_TIME),
            },
            description="Never the secret. Usage is written about once a second.",
        ),
        "ApiKeyList": _obj(
            ["apiKeys", "total"],
            {"apiKeys": {"type": "array", "items": _schema("ApiKey")}, "total": _count()},
        ),
        "ApiKeyCreated": {
            "allOf": [
                _schema("ApiKey"),
                _obj(
                    ["key"],
                    {
                        "key": {
                            "type": "string",
                            "pattern": "^lc_(live|test)_",
                            "description": "The secret: shown this once, stored only as a hash.",
                        }
                    },
                ),
            ]
        },
    }


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _obj(
            ["error", "message", "request_id"],
            {
                "error": {"type": "string", "enum": [code for code, _ in ERRORS.values()]},
                "message": STRING,
                "request_id": STRING,
            },
            description="The body of every error response.",
        ),
        **_public_schemas(),
        **_admin_schemas(),
        **_analytics_schemas(),
        **_audit_schemas(),
        **_webhook_schemas(),
    }


# -- headers and shared responses -------------------------------------------------------


def _headers() -> dict[str, Schema]:
    return {
        "RequestId": {
            "description": "The client's X-Request-ID when sane (printable ASCII, at most "
            "128 characters), else a generated one.",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        },
        "NoStore": {
            "description": "Answers that carry tokens or keys are never cached.",
            "required": True,
            "schema": {"type": "string", "pattern": "no-store"},
        },
        "JwksCacheControl": {
            "required": True,
            "schema": {"type": "string", "const": public.JWKS_CACHE_CONTROL},
        },
        "RetryAfter": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        },
        "WWWAuthenticate": {
            "description": 'RFC 6750 challenge: `Bearer realm="licensechain"`, with `error` '
            "when a key was presented.",
            "required": True,
            "schema": {"type": "string", "pattern": '^Bearer realm="licensechain"'},
        },
        "AccessControlAllowOrigin": {
            "description": "The request's `Origin`, when an app lists it in `allowed_origins`.",
            "schema": {"type": "string"},
        },
        "AccessControlExposeHeaders": {
            "description": "With an allowed origin: the headers a browser script may read.",
            "schema": {"type": "string", "const": cors.EXPOSED_HEADERS},
        },
        "AccessControlAllowMethods": {
            "description": "With an allowed origin: the methods of this path.",
            "schema": {"type": "string"},
        },
        "AccessControlAllowHeaders": {
            "description": "With an allowed origin: the request headers allowed.",
            "schema": {"type": "string", "const": cors.ALLOWED_REQUEST_HEADERS},
        },
        "AccessControlMaxAge": {
            "description": "With an allowed origin: seconds a browser may cache the answer.",
            "schema": {"type": "string", "const": cors.PREFLIGHT_MAX_AGE},
        },
        "Vary": {
            "description": "Always names `Origin` on the public endpoints.",
            "required": True,
            "schema": {"type": "string", "pattern": "Origin"},
        },
        "Allow": {
            "description": "The methods of this path.",
            "required": True,
            "schema": {"type": "string"},
        },
        "RateLimitLimit": {"schema": {"type": "integer"}},
        "RateLimitRemaining": {"schema": {"type": "integer"}},
        "RateLimitReset": {"schema": {"type": "integer"}},
    }


def _error_responses() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for status, (code, text) in ERRORS.items():
        headers: dict[str, Schema] = {"X-Request-ID": _ref("headers", "RequestId")}
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


_NO_STORE = {"Cache-Control": _ref("headers", "NoStore")}
_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": _ref("headers", "RateLimitLimit"),
    "X-RateLimit-Remaining": _ref("headers", "RateLimitRemaining"),
    "X-RateLimit-Reset": _ref("headers", "RateLimitReset"),
}
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": _ref("headers", "AccessControlAllowOrigin"),
    "Access-Control-Expose-Headers": _ref("headers", "AccessControlExposeHeaders"),
    "Vary": _ref("headers", "Vary"),
}
_BODY_ERRORS = (400, 413, 415)
_AUTH_ERRORS = (401, 403, 429, 503)


def _ok(description: str, schema: Schema, headers: dict[str, Schema] | None = None) -> Schema:
    return {
        "description": description,
        "headers": {"X-Request-ID": _ref("headers", "RequestId"), **(headers or {})},
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): _ref("responses", ERRORS[s][0]) for s in sorted(set(statuses))}


def _body(name: str, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": _schema(name)}}}


# -- operations -------------------------------------------------------------------------


def _public_post(summary: str, description: str, request: str, response: str) -> Schema:
    return {
        "summary": summary,
        "description": description,
        "tags": ["public"],
        "security": [],
        "requestBody": _body(request),
        "responses": {
            "200": _ok(
                "The outcome.",
                _schema(response),
                {**_NO_STORE, **_RATE_LIMIT_HEADERS, **_CORS_HEADERS},
            ),
            **_errors(*_BODY_ERRORS, 429, 503),
        },
    }


def _preflight() -> Schema:
    return {
        "summary": "CORS preflight",
        "description": "Answers browsers for the origins that some app lists in "
        "`allowed_origins`; any other origin gets no `Access-Control-Allow-Origin`. "
        "Credentials are never allowed.",
        "tags": ["public"],
        "security": [],
        "parameters": [
            {"name": "Origin", "in": "header", "schema": {"type": "string"}},
            {
                "name": "Access-Control-Request-Method",
                "in": "header",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "204": {
                "description": "No body; the CORS headers when the origin is allowed.",
                "headers": {
                    "X-Request-ID": _ref("headers", "RequestId"),
                    "Allow": _ref("headers", "Allow"),
                    "Vary": _ref("headers", "Vary"),
                    "Access-Control-Allow-Origin": _ref("headers", "AccessControlAllowOrigin"),
                    "Access-Control-Allow-Methods": _ref("headers", "AccessControlAllowMethods"),
                    "Access-Control-Allow-Headers": _ref("headers", "AccessControlAllowHeaders"),
                    "Access-Control-Max-Age": _ref("headers", "AccessControlMaxAge"),
                },
            }
        },
    }


def _admin(
    summary: str,
    scope: str,
    status: int,
    result: str,
    schema: Schema,
    *,
    errors: tuple[int, ...] = (),
    body: str | None = None,
    body_required: bool = True,
    parameters: list[Schema] | None = None,
) -> Schema:
    op: Schema = {
        "summary": summary,
        "description": f"Needs an API key with the scope `{scope}` (or `*`).",
        "tags": ["admin"],
        "security": [{"bearerAuth": [scope]}],
        "responses": {str(status): _ok(result, schema, _NO_STORE)},
    }
    if body is not None:
        op["requestBody"] = _body(body, body_required)
        errors = (*errors, *_BODY_ERRORS)
    op["responses"].update(_errors(*_AUTH_ERRORS, *errors))
    if parameters:
        op["parameters"] = parameters
    return op


def _path_param(name: str, description: str, max_length: int = 256) -> Schema:
    # No "/" (it would be another route) and no NUL.
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "pattern": "^[^/\\x00]+$",
        },
    }


def _page_params() -> list[Schema]:
    return [
        {
            "name": "page",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": limits.PAGE},
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": limits.PAGE_SIZE},
        },
    ]


def _health(root: bool = False) -> Schema:
    where = " Also served without the prefix, as `GET /health`." if not root else ""
    return {
        "get": {
            "summary": "Health of the server and its dependencies",
            "description": "The same answer with or without the API prefix." + where,
            "tags": ["public"],
            "security": [],
            "responses": {
                "200": _ok("Healthy (`status: ok`).", _schema("Health"), _CORS_HEADERS),
                "503": _ok(
                    "A dependency is down (`status: degraded`, `failing` names it).",
                    _schema("Health"),
                    _CORS_HEADERS,
                ),
            },
        },
        "options": _preflight(),
    }


def _public_paths(p: str) -> dict[str, Schema]:
    return {
        f"{p}/licenses/verify": {
            "post": _public_post(
                "Verify a license key and get a license token",
                "Always 200 for a verification outcome. An unbound hardware id is bound "
                "while the license has a free device slot. Rate limited per client IP and "
                "per license key.",
                "VerifyRequest",
                "VerifyResponse",
            ),
            "options": _preflight(),
        },
        f"{p}/licenses/validate-hardware": {
            "post": _public_post(
                "Check (and bind) a hardware id for a license key",
                "The binding rules and response shape of verify; `hwBound: true` on success.",
                "ValidateHardwareRequest",
                "VerifyResponse",
            ),
            "options": _preflight(),
        },
        f"{p}/licenses/introspect": {
            "post": _public_post(
                "Introspect a license token",
                "Checks the signature and claims, then the denylist, then the live license "
                "status. 503 when the denylist cannot be asked: never `active: true` for a "
                "token that could not be checked.",
                "IntrospectRequest",
                "IntrospectResponse",
            ),
            "options": _preflight(),
        },
        f"{p}/licenses/jwks": {
            "get": {
                "summary": "The public signing keys (JWKS)",
                "description": "The active key plus every retired key whose tokens may "
                "still be live.",
                "tags": ["public"],
                "security": [],
                "responses": {
                    "200": _ok(
                        "The key set.",
                        _schema("Jwks"),
                        {
                            "Cache-Control": _ref("headers", "JwksCacheControl"),
                            **_RATE_LIMIT_HEADERS,
                            **_CORS_HEADERS,
                        },
                    ),
                    **_errors(429, 503),
                },
            },
            "options": _preflight(),
        },
        f"{p}/health": _health(),
        f"{p}/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["public"],
                "security": [],
                "responses": {"200": _ok("The OpenAPI document.", {"type": "object"})},
            }
        },
    }


def _license_param(name: str = "license") -> Schema:
    reserved = "|".join(converters.RESERVED_LICENSE_PATHS)
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": "License id (`lic_...`) or license key (`LC-...`, any case).",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": limits.LOOKUP,
            "pattern": f"^(?!(?:{reserved})$)[^/\\x00]+$",
        },
    }


def _query(name: str, schema: Schema, description: str = "") -> Schema:
    parameter: Schema = {"name": name, "in": "query", "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _analytics_params() -> list[Schema]:
    return [
        _query(
            "period",
            {"type": "string", "enum": list(analytics_report.PERIODS)},
            f"Days up to today (UTC); default {analytics_report.DEFAULT_PERIOD}.",
        )
    ]


def _app_filter_params() -> list[Schema]:
    return [
        _query(name, _text(limits.APP_ID), "Only this app (404 when there is none).")
        for name in ("app_id", "appId")
    ]


def _admin_paths(p: str) -> dict[str, Schema]:
    app_id = _path_param("appId", "App id.")
    license_ref = _license_param()
    hwuid = {
        **_path_param("hwuid", "A bound hardware id."),
        "description": "A bound hardware id, percent-encoded; it may contain `/`. Clients "
        "that normalize `.` and `..` path segments cannot send those: use the query form.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": limits.HWUID,
            "pattern": "^[^\\x00]+$",
        },
    }
    lic = _schema("License")

    def status_change(
        summary: str,
        body: str = "EmptyRequest",
        *,
        required: bool = False,
        scope: str = "licenses:write",
    ) -> Schema:
        return {
            "patch": _admin(
                summary,
                scope,
                200,
                "The license after the change.",
                lic,
                errors=(404, 409),
                body=body,
                body_required=required,
                parameters=[_license_param("licenseId")],
            )
        }

    def analytics(summary: str, schema: str) -> Schema:
        return {
            "get": _admin(
                summary,
                "licenses:read",
                200,
                "The report.",
                _schema(schema),
                errors=(400, 404),
                parameters=[*_analytics_params(), *_app_filter_params()],
            )
        }

    update = {
        "summary": "Update a license (a `status` changes it as /revoke, /suspend, /activate)",
        "result": "The updated license.",
    }
    return {
        f"{p}/licenses/revoke-token": {
            "post": _admin(
                "Revoke one license token",
                "tokens:revoke",
                200,
                "Revoked (idempotent).",
                _schema("RevokeTokenResponse"),
                errors=(404,),
                body="RevokeTokenRequest",
            )
        },
        f"{p}/apps": {
            "post": _admin(
                "Create an app",
                "apps:write",
                201,
                "The new app.",
                _schema("App"),
                errors=(409,),
                body="AppCreate",
            ),
            "get": _admin(
                "List apps, a page at a time",
                "apps:read",
                200,
                "A page of apps (an app-limited key sees its own).",
                _schema("AppList"),
                errors=(400,),
                parameters=[
                    _query("page", {"type": "integer", "minimum": 1, "maximum": limits.PAGE}),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": limits.PAGE_SIZE},
                    ),
                ],
            ),
        },
        f"{p}/apps/{{appId}}": {
            "get": _admin(
                "One app",
                "apps:read",
                200,
                "The app.",
                _schema("App"),
                errors=(404,),
                parameters=[app_id],
            ),
            "patch": _admin(
                "Update an app",
                "apps:write",
                200,
                "The updated app.",
                _schema("App"),
                errors=(404,),
                body="AppUpdate",
                body_required=False,
                parameters=[app_id],
            ),
            "delete": _admin(
                "Delete an app (409 while one of its licenses is not revoked)",
                "apps:write",
                200,
                "The deleted app; its revoked licenses and its app keys went with it.",
                _schema("AppDeleted"),
                errors=(404, 409),
                body="EmptyRequest",
                body_required=False,
                parameters=[app_id],
            ),
        },
        f"{p}/apps/{{appId}}/regenerate-key": {
            "post": _admin(
                "A new API key limited to the app; the app's previous keys are revoked",
                "api-keys:write",
                201,
                "The new key, shown once.",
                _schema("AppKeyCreated"),
                errors=(404,),
                body="EmptyRequest",
                body_required=False,
                parameters=[app_id],
            )
        },
        f"{p}/apps/{{appId}}/licenses": {
            "post": _admin(
                "Create a license for an app",
                "licenses:write",
                201,
                "The new license.",
                lic,
                errors=(404, 409),
                body="LicenseCreate",
                body_required=False,
                parameters=[app_id],
            ),
            "get": _admin(
                "The licenses of an app, a page at a time",
                "licenses:read",
                200,
                "A page of licenses.",
                _schema("LicenseList"),
                errors=(400, 404),
                parameters=[app_id, *_page_params()],
            ),
        },
        f"{p}/licenses": {
            "get": _admin(
                "Search licenses, a page at a time",
                "licenses:read",
                200,
                "A page of licenses.",
                _schema("LicenseList"),
                errors=(400, 404),
                parameters=[
                    *_app_filter_params(),
                    {
                        "name": "status",
                        "in": "query",
                        "description": "Case-insensitive.",
                        "schema": LICENSE_STATUS,
                    },
                    *_page_params(),
                ],
            )
        },
        f"{p}/licenses/stats": {
            "get": _admin(
                "License counts by status",
                "licenses:read",
                200,
                "The counts.",
                _schema("LicenseStats"),
                errors=(400, 404),
                parameters=_app_filter_params(),
            )
        },
        f"{p}/licenses/{{license}}": {
            "get": _admin(
                "One license, by id or by key",
                "licenses:read",
                200,
                "The license.",
                lic,
                errors=(404,),
                parameters=[license_ref],
            ),
            "patch": _admin(
                update["summary"],
                "licenses:write",
                200,
                update["result"],
                lic,
                errors=(404, 409),
                body="LicenseUpdate",
                parameters=[license_ref],
            ),
            "put": _admin(
                update["summary"] + "; the same as PATCH",
                "licenses:write",
                200,
                update["result"],
                lic,
                errors=(404, 409),
                body="LicenseUpdate",
                parameters=[license_ref],
            ),
            "delete": _admin(
                "Revoke a license, as /revoke does (the record is kept)",
                "licenses:write",
                200,
                "The revoked license.",
                lic,
                errors=(404, 409),
                body="RevokeLicenseRequest",
                body_required=False,
                parameters=[license_ref],
            ),
        },
        f"{p}/licenses/{{licenseId}}/revoke": status_change(
            "Revoke a license (its outstanding tokens are refused at once)",
            "RevokeLicenseRequest",
        ),
        f"{p}/licenses/{{licenseId}}/suspend": status_change(
            "Suspend a license (its outstanding tokens are refused at once)",
            scope="licenses:suspend",
        ),
        f"{p}/licenses/{{licenseId}}/activate": status_change(
            "Reactivate a suspended license", scope="licenses:suspend"
        ),
        f"{p}/licenses/{{licenseId}}/status": status_change(
            "Set the status (any case), as /revoke, /suspend or /activate would",
            "LicenseStatusRequest",
            required=True,
        ),
        f"{p}/licenses/{{licenseId}}/extend": status_change(
            "Set a new expiry", "ExtendLicenseRequest", required=True
        ),
        f"{p}/licenses/{{licenseId}}/analytics": {
            "get": _admin(
                "Verifications of one license by outcome per day",
                "licenses:read",
                200,
                "The report.",
                _schema("LicenseAnalytics"),
                errors=(400, 404),
                parameters=[_license_param("licenseId"), *_analytics_params()],
            )
        },
        f"{p}/licenses/{{licenseId}}/devices/{{hwuid}}": {
            "delete": _admin(
                "Release a device slot",
                "devices:write",
                200,
                "The license without that device.",
                lic,
                errors=(404,),
                parameters=[_license_param("licenseId"), hwuid],
            )
        },
        f"{p}/licenses/{{licenseId}}/devices": {
            "delete": _admin(
                "Release a device slot, the hardware id as `?hwuid=` or in the body",
                "devices:write",
                200,
                "The license without that device.",
                lic,
                errors=(404,),
                body="DeviceRelease",
                body_required=False,
                parameters=[
                    _license_param("licenseId"),
                    _query("hwuid", _text(limits.HWUID), "The hardware id (any, `/` included)."),
                ],
            )
        },
        f"{p}/analytics/stats": analytics(
            "Verifications by outcome per day, with license and app counts", "AnalyticsStats"
        ),
        f"{p}/analytics/usage": analytics("Verifications by outcome per day", "AnalyticsUsage"),
        f"{p}/signing-keys/rotate": {
            "post": _admin(
                "Rotate the signing key",
                "keys:rotate",
                200,
                "The new active key; the old one stays in the JWKS until its last token "
                "has expired.",
                _schema("RotateResponse"),
            )
        },
        f"{p}/customers/export": {
            "post": _admin(
                "Export every record about a customer",
                "customers:read",
                200,
                "One versioned JSON document (an app-limited key: its apps only).",
                _schema("CustomerExport"),
                body="CustomerRequest",
                errors=(404,),
            )
        },
        f"{p}/customers/erase": {
            "post": _admin(
                "Erase a customer's personal data",
                "customers:erase",
                200,
                "What was blanked or pseudonymised; license facts are kept.",
                _schema("CustomerErasure"),
                body="CustomerRequest",
                errors=(404,),
            )
        },
        **_api_key_paths(p),
    }


def _api_key_paths(p: str) -> dict[str, Schema]:
    key_id = _path_param("keyId", "API key id.")
    key = _schema("ApiKey")
    return {
        f"{p}/api-keys": {
            "get": _admin(
                "List the API keys this key may see (never a secret)",
                "api-keys:read",
                200,
                "The keys, oldest first.",
                _schema("ApiKeyList"),
            ),
            "post": _admin(
                "Create an API key (a role or scopes, apps, expiry)",
                "api-keys:write",
                201,
                "The new key, shown once.",
                _schema("ApiKeyCreated"),
                errors=(404,),
                body="ApiKeyCreate",
            ),
        },
        f"{p}/api-keys/{{keyId}}": {
            "get": _admin(
                "One API key (never its secret)",
                "api-keys:read",
                200,
                "The key.",
                key,
                errors=(404,),
                parameters=[key_id],
            ),
            "patch": _admin(
                "Rename, describe or change the expiry of an API key",
                "api-keys:write",
                200,
                "The key after the change.",
                key,
                errors=(404,),
                body="ApiKeyUpdate",
                body_required=False,
                parameters=[key_id],
            ),
        },
        f"{p}/api-keys/{{keyId}}/rotate": {
            "post": _admin(
                "A new secret; the old one works for the grace period",
                "api-keys:write",
                200,
                "The key with its new secret, shown once.",
                _schema("ApiKeyCreated"),
                errors=(404, 409),
                body="ApiKeyRotate",
                body_required=False,
                parameters=[key_id],
            )
        },
        f"{p}/api-keys/{{keyId}}/revoke": {
            "post": _admin(
                "Revoke an API key (every worker refuses it from the next request)",
                "api-keys:write",
                200,
                "The revoked key (idempotent).",
                key,
                errors=(404,),
                body="EmptyRequest",
                body_required=False,
                parameters=[key_id],
            )
        },
    }


# -- the audit log (api/audit_events.py) ----------------------------------------------------


AUDIT_EVENT_FIELDS = (
    "id",
    "seq",
    "action",
    "actor",
    "requestId",
    "target",
    "appId",
    "data",
    "personal",
    "createdAt",
)


def _audit_schemas() -> dict[str, Schema]:
    text_or_null = _nullable(STRING)
    return {
        "AuditEvent": _obj(
            list(AUDIT_EVENT_FIELDS),
            {
                "id": {"type": "integer"},
                "seq": _nullable({"type": "integer", "minimum": 1}),
                "action": {"type": "string", "description": "`<aggregate>.<verb>`."},
                "actor": _obj(
                    ["kind", "id", "name", "ip", "userAgent"],
                    {
                        "kind": _nullable(
                            {"type": "string", "enum": list(ACTOR_KINDS)},
                        ),
                        "id": text_or_null,
                        "name": text_or_null,
                        "ip": text_or_null,
                        "userAgent": text_or_null,
                    },
                ),
                "requestId": text_or_null,
                "target": text_or_null,
                "appId": text_or_null,
                "data": {"type": "object"},
                "personal": _nullable({"type": "object"}),
                "createdAt": DATE_TIME,
            },
            description="`seq` is the event's place in the hash chain (null: older than "
            "the chain); `actor.ip`, `actor.userAgent` and `personal` are personal data "
            "(null once erased).",
        ),
        "AuditEventPage": _obj(
            ["events", "nextCursor"],
            {
                "events": {"type": "array", "items": _schema("AuditEvent")},
                "nextCursor": _nullable(STRING),
            },
        ),
    }


def _audit_paths(p: str) -> dict[str, Schema]:
    when = {"type": "string", "format": "date-time", "maxLength": 64}
    text = audit_events.TEXT_FILTERS
    return {
        f"{p}/audit-events": {
            "get": _admin(
                "The audit log, newest first",
                "audit:read",
                200,
                "One page of events; `nextCursor` is null on the last page.",
                _schema("AuditEventPage"),
                errors=(400, 404),
                parameters=[
                    _query("actor", _text(text["actor"]), "The actor's id."),
                    _query("action", _text(text["action"]), "E.g. `license.suspend`."),
                    _query("target", _text(text["target"]), "The changed object's id."),
                    *_app_filter_params(),
                    _query("since", when, "Events at or after this time."),
                    _query("until", when, "Events before this time."),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": limits.PAGE_SIZE},
                        f"Events per page (default {limits.DEFAULT_PAGE_SIZE}).",
                    ),
                    _query(
                        "cursor",
                        _text(audit_events.MAX_CURSOR),
                        "The `nextCursor` of the previous page.",
                    ),
                ],
            )
        }
    }


# -- webhooks (issue 12) ------------------------------------------------------------------


def _webhook_schemas() -> dict[str, Schema]:
    url = {
        **_text(limits.WEBHOOK_URL),
        "description": "https URL (http and private "
        "addresses only with LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE).",
    }
    events = {
        "type": "array",
        "items": {"type": "string", "enum": [*SUBSCRIBABLE, "*"]},
        "maxItems": WEBHOOK_MAX_EVENTS,
        "description": "Event types; `*`, empty or absent: all of them.",
    }
    secret_in = {
        "anyOf": [{"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$"}, {"type": "null"}],
        "description": "A `whsec_` secret of 24 to 64 bytes; null or absent: a new one.",
    }
    endpoint_fields: dict[str, Schema] = {
        "id": {"type": "string", "format": "uuid"},
        "url": STRING,
        "description": _nullable(STRING),
        "events": {"type": "array", "items": STRING},
        "appId": _nullable(STRING),
        "app_id": _nullable(STRING),
        "source": {"type": "string", "enum": ["api", "app"]},
        "active": {"type": "boolean"},
        "enabled": {"type": "boolean"},
        "disabledAt": _nullable(DATE_TIME),
        "disabledReason": _nullable(STRING),
        "failingSince": _nullable(DATE_TIME),
        "createdAt": DATE_TIME,
        "created_at": DATE_TIME,
        "updatedAt": DATE_TIME,
        "updated_at": DATE_TIME,
    }
    secret_out = {"type": "string", "pattern": "^whsec_", "description": "Shown this once."}
    attempt = _obj(
        ["attemptedAt", "statusCode", "latencyMs", "error"],
        {
            "attemptedAt": DATE_TIME,
            "statusCode": _nullable({"type": "integer"}),
            "latencyMs": {"type": "integer", "minimum": 0},
            "error": _nullable(STRING),
        },
    )
    delivery_fields: dict[str, Schema] = {
        "id": STRING,
        "webhookId": STRING,
        "eventId": STRING,
        "eventType": STRING,
        "status": {"type": "string", "enum": ["pending", "succeeded", "dead"]},
        "attemptCount": {"type": "integer", "minimum": 0},
        "maxAttempts": {"type": "integer", "minimum": 1},
        "nextAttemptAt": _nullable(DATE_TIME),
        "lastStatusCode": _nullable({"type": "integer"}),
        "lastError": _nullable(STRING),
        "lastAttemptAt": _nullable(DATE_TIME),
        "createdAt": DATE_TIME,
        "attempts": {"type": "array", "items": attempt},
    }
    return {
        "WebhookCreate": {
            **_closed(
                {
                    "url": url,
                    "events": events,
                    "secret": secret_in,
                    "description": _nullable(_text(WEBHOOK_DESCRIPTION)),
                    **_aliases(("app_id", "appId"), _nullable(_text(limits.APP_ID))),
                },
                description="As LicenseChain's SDKs send it. `app_id` absent: every app's "
                "events (unrestricted keys); an app-limited key makes its app's webhooks.",
            ),
            "required": ["url"],
        },
        "WebhookUpdate": _closed(
            {
                "url": url,
                "events": _nullable(events),
                "secret": secret_in,
                "description": _nullable(_text(WEBHOOK_DESCRIPTION, 0)),
                **_aliases(("enabled", "active"), _nullable({"type": "boolean"})),
            },
            description="Partial update (PATCH or PUT). An app's webhook (its "
            "`webhook_url`) only takes `enabled` (409 otherwise).",
        ),
        "Webhook": _obj(list(endpoint_fields), endpoint_fields),
        "WebhookWithSecret": _obj(
            [*endpoint_fields, "secret"], {**endpoint_fields, "secret": secret_out}
        ),
        "WebhookRotated": _obj(
            [*endpoint_fields, "secret", "previousSecretExpiresAt"],
            {
                **endpoint_fields,
                "secret": secret_out,
                "previousSecretExpiresAt": {
                    **_nullable(DATE_TIME),
                    "description": "Until then deliveries are signed with both secrets.",
                },
            },
        ),
        "WebhookList": _obj(
            ["data", "total", "page", "limit", "pagination"],
            {
                "data": {"type": "array", "items": _schema("Webhook")},
                "total": {"type": "integer"},
                "page": {"type": "integer"},
                "limit": {"type": "integer"},
                "pagination": _obj(
                    ["total", "page", "limit"],
                    {k: {"type": "integer"} for k in ("total", "page", "limit")},
                ),
            },
        ),
        "WebhookDeleted": _obj(["id", "deleted"], {"id": STRING, "deleted": {"const": True}}),
        "WebhookDelivery": _obj(list(delivery_fields), delivery_fields),
        "WebhookDeliveryList": _obj(
            ["data", "nextCursor", "limit"],
            {
                "data": {"type": "array", "items": _schema("WebhookDelivery")},
                "nextCursor": {
                    **_nullable(STRING),
                    "description": "Pass as `cursor` for the next page; null on the last.",
                },
                "limit": {"type": "integer"},
            },
        ),
        "WebhookTestResult": _obj(
            ["success", "statusCode", "latencyMs", "error", "delivery"],
            {
                "success": {"type": "boolean"},
                "statusCode": _nullable({"type": "integer"}),
                "latencyMs": {"type": "integer", "minimum": 0},
                "error": _nullable(STRING),
                "delivery": _schema("WebhookDelivery"),
            },
        ),
    }


def _webhook_paths(p: str) -> dict[str, Schema]:
    webhook = _path_param("webhookId", "Webhook id.")
    delivery = _path_param("deliveryId", "Delivery id.")
    one = _schema("Webhook")
    update = {
        "summary": "Update a webhook (PUT as LicenseChain's SDKs send it)",
        "result": "The webhook.",
    }

    def write(summary: str, result: str, schema: Schema, *params: Schema, **kw: Any) -> Schema:
        return _admin(
            summary,
            "webhooks:write",
            kw.pop("status", 200),
            result,
            schema,
            errors=kw.pop("errors", (404,)),
            body=kw.pop("body", "EmptyRequest"),
            body_required=kw.pop("body_required", False),
            parameters=list(params),
        )

    cursor = _query("cursor", {"type": "string", "maxLength": 64}, "`nextCursor` of the last page.")
    return {
        f"{p}/webhooks": {
            "post": _admin(
                "Create a webhook; its signing secret is shown this once",
                "webhooks:write",
                201,
                "The webhook with its `secret`.",
                _schema("WebhookWithSecret"),
                errors=(404, 409),
                body="WebhookCreate",
            ),
            "get": _admin(
                "List webhooks (in `data`)",
                "webhooks:read",
                200,
                "One page.",
                _schema("WebhookList"),
                errors=(400, 404),
                parameters=[*_page_params(), *_app_filter_params()],
            ),
        },
        f"{p}/webhooks/{{webhookId}}": {
            "get": _admin(
                "A webhook (never its secret)",
                "webhooks:read",
                200,
                "The webhook.",
                one,
                errors=(404,),
                parameters=[webhook],
            ),
            "patch": write(
                update["summary"],
                update["result"],
                one,
                webhook,
                errors=(404, 409),
                body="WebhookUpdate",
            ),
            "put": write(
                update["summary"],
                update["result"],
                one,
                webhook,
                errors=(404, 409),
                body="WebhookUpdate",
            ),
            "delete": write(
                "Delete a webhook and its deliveries",
                "Deleted.",
                _schema("WebhookDeleted"),
                webhook,
                errors=(404, 409),
            ),
        },
        f"{p}/webhooks/{{webhookId}}/test": {
            "post": write(
                "Send a `webhook.test` event now",
                "The outcome of the attempt (a failed one is not an error).",
                _schema("WebhookTestResult"),
                webhook,
            )
        },
        f"{p}/webhooks/{{webhookId}}/deliveries": {
            "get": _admin(
                "Deliveries, newest first, with every attempt",
                "webhooks:read",
                200,
                "One page; `nextCursor` leads to the next.",
                _schema("WebhookDeliveryList"),
                errors=(400, 404),
                parameters=[
                    webhook,
                    cursor,
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": limits.PAGE_SIZE}),
                ],
            )
        },
        f"{p}/webhooks/{{webhookId}}/deliveries/{{deliveryId}}/retry": {
            "post": write(
                "Retry a delivery now (a dead one too), with a fresh run of attempts",
                "The delivery, queued.",
                _schema("WebhookDelivery"),
                webhook,
                delivery,
                status=202,
            )
        },
        f"{p}/webhooks/{{webhookId}}/rotate-secret": {
            "post": write(
                "A new signing secret, shown once; the old one signs too during the overlap",
                "The webhook with its new `secret`.",
                _schema("WebhookRotated"),
                webhook,
                errors=(404, 409),
            )
        },
    }


# -- the document -----------------------------------------------------------------------


@lru_cache(maxsize=8)
def _build(prefix: str) -> Schema:
    p = "/" + prefix.strip("/") if prefix.strip("/") else ""
    paths = {**_public_paths(p), **_admin_paths(p), **_audit_paths(p), **_webhook_paths(p)}
    if p:
        paths["/health"] = _health(root=True)
    for item in paths.values():  # every operation takes the client's X-Request-ID
        for operation in item.values():
            operation["parameters"] = [
                _ref("parameters", "RequestId"),
                *operation.get("parameters", []),
            ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LicenseChain license server",
            "version": __version__,
            "description": "License verification and short-lived RS256 license tokens. "
            "Errors are `{error, message, request_id}`; every response carries "
            "`X-Request-ID`.",
        },
        "tags": [
            {"name": "public", "description": "No credentials; rate limited."},
            {"name": "admin", "description": "`Authorization: Bearer <api key>`, scoped."},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "parameters": {
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "description": "Echoed in the response's X-Request-ID when sane "
                    "(printable ASCII without spaces, at most 128 characters).",
                    "schema": {"type": "string"},
                }
            },
            "responses": _error_responses(),
            "headers": _headers(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`lc_live_...` or `lc_test_...`). Scopes: "
                    + ", ".join(f"`{s}`" for s in SCOPES)
                    + "; `*` grants them all. Roles: "
                    + ", ".join(f"`{r}`" for r in ROLE_NAMES)
                    + ". `licenses:write` implies `licenses:suspend` and `devices:write`; "
                    "`api-keys:write` implies `api-keys:read`.",
                }
            },
        },
    }


def openapi_document(prefix: str = "/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document for an API mounted at ``prefix`` (a fresh copy)."""
    return copy.deepcopy(_build(prefix))


@bp.get("/openapi.json")
def openapi() -> Response:
    """This document, for the app's URL prefix (built on the first request, then kept)."""
    state = get_issuer_state()
    payload = state.openapi_json
    if payload is None:
        payload = state.openapi_json = json.dumps(openapi_document(state.settings.url_prefix))
    return Response(payload, mimetype="application/json")
