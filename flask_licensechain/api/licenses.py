"""Authenticated license endpoints: create, list, get, patch, status changes, devices.

Every change goes through the store, which records in the same transaction the revocation
it needs (revoke and suspend block the license's outstanding tokens, activate lifts that;
a narrowing voids the tokens issued before it; see ``store/revocations.py``). The committed
entries are then announced through the denylist, so gates refuse at once; the store stays
the record that every denylist follows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from flask import Response, request

from .. import field_limits as limits
from ..core.contract import LICENSE_STATUSES
from ..core.errors import Conflict, InvalidRequest, NotFound
from ..serialize import license_json, parse_timestamp
from ..state import IssuerState, get_issuer_state
from ..store import LicenseRecord
from .admin import audit
from .auth import requires
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import json_response

#: PATCH/create field -> (accepted names, parser of a present value)
_FieldParser = Callable[[Fields, tuple[str, ...]], Any]
_LICENSE_FIELDS: Final[dict[str, tuple[tuple[str, ...], _FieldParser]]] = {
    "plan": (("plan",), lambda f, n: f.string(*n, max_length=limits.PLAN)),
    "issued_to": (
        ("issuedTo", "issued_to"),
        lambda f, n: f.string(*n, max_length=limits.ISSUED_TO),
    ),
    "issued_email": (
        ("issuedEmail", "issued_email", "email"),
        lambda f, n: f.string(*n, max_length=limits.EMAIL),
    ),
    "expires_at": (("expiresAt", "expires_at"), lambda f, n: f.timestamp(*n)),
    "features": (
        ("features",),
        lambda f, n: _non_null(
            f, n, f.string_list(*n, max_items=limits.FEATURES, max_length=limits.FEATURE)
        ),
    ),
    "metadata": (
        ("metadata",),
        lambda f, n: f.obj(*n, max_bytes=limits.METADATA_BYTES) or {},
    ),
    "max_devices": (
        ("maxDevices", "max_devices"),
        lambda f, n: _non_null(f, n, f.integer(*n, minimum=1, maximum=limits.MAX_DEVICES)),
    ),
    "require_hwuid": (
        ("requireHwuid", "require_hwuid"),
        lambda f, n: _non_null(f, n, f.boolean(*n)),
    ),
}
_KNOWN_NAMES: Final = {name for names, _ in _LICENSE_FIELDS.values() for name in names}


def _non_null(fields: Fields, names: tuple[str, ...], value: Any) -> Any:
    if value is None:
        raise InvalidRequest(f"'{names[0]}' must not be null.")
    return value


def license_changes(fields: Fields) -> dict[str, Any]:
    """The store's keyword arguments for the fields present in a create or PATCH body."""
    reject_unknown(fields, _KNOWN_NAMES)
    changes: dict[str, Any] = {}
    for field, (names, parse) in _LICENSE_FIELDS.items():
        if fields.present(*names):
            changes[field] = parse(fields, names)
    return changes


def _query_int(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise InvalidRequest(f"'{name}' must be a positive integer.")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise InvalidRequest(f"'{name}' must be between 1 and {maximum}.")
    return value


def _query_status() -> str | None:
    raw = request.args.get("status")
    if raw is None or raw == "":
        return None
    status = raw.upper()
    if status not in LICENSE_STATUSES:
        raise InvalidRequest(f"'status' must be one of {', '.join(LICENSE_STATUSES)}.")
    return status


def _one(lic: LicenseRecord | None, status: int = 200) -> Response:
    if lic is None:
        raise NotFound("License not found.")
    return json_response(license_json(lic, datetime.now(UTC)), status)


def _existing(state: IssuerState, license_id: str) -> LicenseRecord:
    lic = state.store.licenses.get(license_id)
    if lic is None:
        raise NotFound("License not found.")
    return lic


def _page(state: IssuerState, app_id: str | None) -> Response:
    number = _query_int("page", 1, limits.PAGE)
    size = _query_int("limit", limits.DEFAULT_PAGE_SIZE, limits.PAGE_SIZE)
    now = datetime.now(UTC)
    records, total = state.store.licenses.list(
        app_id=app_id, status=_query_status(), page=number, limit=size, now=now
    )
    return json_response(
        {
            "licenses": [license_json(lic, now) for lic in records],
            "total": total,
            "page": number,
            "limit": size,
        }
    )


def _not_revoked(lic: LicenseRecord, action: str) -> None:
    if lic.status == "REVOKED":
        raise Conflict(f"A revoked license cannot be {action}.")


def _set_status(state: IssuerState, license_id: str, status: str) -> LicenseRecord:
    lic = state.store.licenses.set_status(license_id, status, announce=state.denylist.publish)
    if lic is None:
        raise NotFound("License not found.")
    return lic


@bp.post("/apps/<app_id>/licenses")
@requires("licenses:write")
def create_license(app_id: str) -> Response:
    """A new license of the app; 201 with the license object."""
    state = get_issuer_state()
    changes = license_changes(Fields(read_json_body(state.settings.max_body_bytes)))
    lic = state.store.licenses.create(app_id, **changes)
    audit(state.store, "license.create", lic.id, app_id=app_id)
    return _one(lic, 201)


@bp.get("/apps/<app_id>/licenses")
@requires("licenses:read")
def app_licenses(app_id: str) -> Response:
    """One page of an app's licenses (``page``, ``limit``, ``status`` query parameters)."""
    state = get_issuer_state()
    if state.store.apps.get(app_id) is None:
        raise NotFound("App not found.")
    return _page(state, app_id)


@bp.get("/licenses")
@requires("licenses:read")
def list_licenses() -> Response:
    """One page of licenses, of every app or of ``app_id``."""
    app_id = request.args.get("app_id") or request.args.get("appId") or None
    if app_id is not None and len(app_id) > limits.APP_ID:
        raise InvalidRequest("'app_id' is too long.")
    return _page(get_issuer_state(), app_id)


@bp.get("/licenses/<ref>")
@requires("licenses:read")
def get_license(ref: str) -> Response:
    """One license, by id or key."""
    return _one(get_issuer_state().store.licenses.get_by_id_or_key(ref))


@bp.patch("/licenses/<license_id>")
@requires("licenses:write")
def update_license(license_id: str) -> Response:
    """Change the fields present in the body (camelCase or snake_case names)."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    if fields.present("status"):
        raise InvalidRequest("Change the status with /revoke, /suspend, /activate or /extend.")
    changes = license_changes(fields)
    if not changes:
        return _one(_existing(state, license_id))
    lic = state.store.licenses.update(license_id, announce=state.denylist.publish, **changes)
    if lic is not None:
        audit(state.store, "license.update", lic.id, fields=sorted(changes))
    return _one(lic)


@bp.patch("/licenses/<license_id>/revoke")
@requires("licenses:write")
def revoke_license(license_id: str) -> Response:
    """Revoke for good; the license's outstanding tokens are refused at once."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, {"reason"})
    reason = fields.string("reason", max_length=limits.REASON)
    lic = _existing(state, license_id)
    previous = lic.status
    lic = _set_status(state, lic.id, "REVOKED")
    if previous != "REVOKED":
        audit(state.store, "license.revoke", lic.id, reason=reason)
    return _one(lic)


@bp.patch("/licenses/<license_id>/suspend")
@requires("licenses:write")
def suspend_license(license_id: str) -> Response:
    """Suspend (reversible); the license's outstanding tokens are refused at once."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    lic = _existing(state, license_id)
    _not_revoked(lic, "suspended")
    previous = lic.status
    lic = _set_status(state, lic.id, "SUSPENDED")
    if previous != "SUSPENDED":
        audit(state.store, "license.suspend", lic.id)
    return _one(lic)


@bp.patch("/licenses/<license_id>/activate")
@requires("licenses:write")
def activate_license(license_id: str) -> Response:
    """Lift a suspension (a revoked license stays revoked: 409)."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    lic = _existing(state, license_id)
    _not_revoked(lic, "activated")
    previous = lic.status
    lic = _set_status(state, lic.id, "ACTIVE")
    if previous != "ACTIVE":
        audit(state.store, "license.activate", lic.id)
    return _one(lic)


@bp.patch("/licenses/<license_id>/extend")
@requires("licenses:write")
def extend_license(license_id: str) -> Response:
    """Set the expiry (``expiresAt``; null makes the license perpetual)."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, {"expiresAt", "expires_at"})
    if not fields.present("expiresAt", "expires_at"):
        raise InvalidRequest("'expiresAt' is required (null makes the license perpetual).")
    raw = fields.raw("expiresAt", "expires_at")
    expires_at = None if raw is None else parse_timestamp(raw, "expiresAt")
    lic = _existing(state, license_id)
    _not_revoked(lic, "extended")
    updated = state.store.licenses.update(
        lic.id, announce=state.denylist.publish, expires_at=expires_at
    )
    audit(state.store, "license.extend", lic.id, expires_at=raw)
    return _one(updated)


@bp.delete("/licenses/<license_id>/devices/<hwuid>")
@requires("licenses:write")
def release_device(license_id: str, hwuid: str) -> Response:
    """Unbind a hardware id, freeing its device slot."""
    state = get_issuer_state()
    _existing(state, license_id)
    if not state.store.licenses.release_device(license_id, hwuid, announce=state.denylist.publish):
        raise NotFound("That device is not bound to this license.")
    audit(state.store, "license.device_release", license_id, hwuid=hwuid)
    return _one(state.store.licenses.get(license_id))
