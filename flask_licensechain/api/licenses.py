"""Authenticated license endpoints: create, list, get, patch, status changes, devices.

Every change goes through the store, which records in the same transaction the revocation
it needs (revoke and suspend block the license's outstanding tokens, activate lifts that;
a narrowing voids the tokens issued before it; see ``store/revocations.py``). The committed
entries are then announced through the denylist, so gates refuse at once; the store stays
the record that every denylist follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from flask import Blueprint, Response, request

from ..core.contract import LICENSE_STATUSES
from ..core.errors import Conflict, InvalidRequest, NotFound
from ..store import LicenseRecord
from .admin import audit
from .auth import scope_guard
from .body import Fields, parse_timestamp, read_json_body, reject_unknown
from .http import json_response
from .serialize import license_json

if TYPE_CHECKING:
    from ..extension import LicenseChainState

log = logging.getLogger("licensechain.api")

MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE: Final = 1_000_000
MAX_DEVICES: Final = 10_000
MAX_TEXT: Final = 200
MAX_EMAIL: Final = 320
MAX_FEATURES: Final = 100

#: PATCH/create field -> (accepted names, parser of a present value)
_FieldParser = Callable[[Fields, tuple[str, ...]], Any]
_LICENSE_FIELDS: Final[dict[str, tuple[tuple[str, ...], _FieldParser]]] = {
    "plan": (("plan",), lambda f, n: f.string(*n, max_length=MAX_TEXT)),
    "issued_to": (("issuedTo", "issued_to"), lambda f, n: f.string(*n, max_length=MAX_TEXT)),
    "issued_email": (
        ("issuedEmail", "issued_email", "email"),
        lambda f, n: f.string(*n, max_length=MAX_EMAIL),
    ),
    "expires_at": (("expiresAt", "expires_at"), lambda f, n: f.timestamp(*n)),
    "features": (
        ("features",),
        lambda f, n: _non_null(f, n, f.string_list(*n, max_items=MAX_FEATURES, max_length=100)),
    ),
    "metadata": (("metadata",), lambda f, n: f.obj(*n) or {}),
    "max_devices": (
        ("maxDevices", "max_devices"),
        lambda f, n: _non_null(f, n, f.integer(*n, minimum=1, maximum=MAX_DEVICES)),
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


def register_license_routes(bp: Blueprint, state: LicenseChainState) -> None:
    store = state.store
    assert store is not None
    licenses = store.licenses
    announce = state.denylist.publish
    max_body = state.settings.max_body_bytes
    requires = scope_guard(store.api_keys)

    def one(lic: LicenseRecord | None, status: int = 200) -> Response:
        if lic is None:
            raise NotFound("License not found.")
        return json_response(license_json(lic, datetime.now(UTC)), status)

    def existing(license_id: str) -> LicenseRecord:
        lic = licenses.get(license_id)
        if lic is None:
            raise NotFound("License not found.")
        return lic

    def page(app_id: str | None) -> Response:
        number = _query_int("page", 1, MAX_PAGE)
        size = _query_int("limit", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        now = datetime.now(UTC)
        records, total = licenses.list(
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

    @bp.post("/apps/<app_id>/licenses")
    @requires("licenses:write")
    def create_license(app_id: str) -> Response:
        changes = license_changes(Fields(read_json_body(max_body)))
        lic = licenses.create(app_id, **changes)
        audit(store, "license.create", lic.id, app_id=app_id)
        return one(lic, 201)

    @bp.get("/apps/<app_id>/licenses")
    @requires("licenses:read")
    def app_licenses(app_id: str) -> Response:
        if store.apps.get(app_id) is None:
            raise NotFound("App not found.")
        return page(app_id)

    @bp.get("/licenses")
    @requires("licenses:read")
    def list_licenses() -> Response:
        app_id = request.args.get("app_id") or request.args.get("appId") or None
        if app_id is not None and len(app_id) > MAX_TEXT:
            raise InvalidRequest("'app_id' is too long.")
        return page(app_id)

    @bp.get("/licenses/<ref>")
    @requires("licenses:read")
    def get_license(ref: str) -> Response:
        return one(licenses.get_by_id_or_key(ref))

    @bp.patch("/licenses/<license_id>")
    @requires("licenses:write")
    def update_license(license_id: str) -> Response:
        fields = Fields(read_json_body(max_body))
        if fields.present("status"):
            raise InvalidRequest("Change the status with /revoke, /suspend, /activate or /extend.")
        changes = license_changes(fields)
        if not changes:
            return one(existing(license_id))
        lic = licenses.update(license_id, announce=announce, **changes)
        if lic is not None:
            audit(store, "license.update", lic.id, fields=sorted(changes))
        return one(lic)

    def not_revoked(lic: LicenseRecord, action: str) -> None:
        if lic.status == "REVOKED":
            raise Conflict(f"A revoked license cannot be {action}.")

    @bp.patch("/licenses/<license_id>/revoke")
    @requires("licenses:write")
    def revoke_license(license_id: str) -> Response:
        fields = Fields(read_json_body(max_body))
        reject_unknown(fields, {"reason"})
        reason = fields.string("reason", max_length=2000)
        lic = existing(license_id)
        previous = lic.status
        lic = _set_status(lic.id, "REVOKED")
        if previous != "REVOKED":
            audit(store, "license.revoke", lic.id, reason=reason)
        return one(lic)

    @bp.patch("/licenses/<license_id>/suspend")
    @requires("licenses:write")
    def suspend_license(license_id: str) -> Response:
        reject_unknown(Fields(read_json_body(max_body)), set())
        lic = existing(license_id)
        not_revoked(lic, "suspended")
        previous = lic.status
        lic = _set_status(lic.id, "SUSPENDED")
        if previous != "SUSPENDED":
            audit(store, "license.suspend", lic.id)
        return one(lic)

    @bp.patch("/licenses/<license_id>/activate")
    @requires("licenses:write")
    def activate_license(license_id: str) -> Response:
        reject_unknown(Fields(read_json_body(max_body)), set())
        lic = existing(license_id)
        not_revoked(lic, "activated")
        previous = lic.status
        lic = _set_status(lic.id, "ACTIVE")
        if previous != "ACTIVE":
            audit(store, "license.activate", lic.id)
        return one(lic)

    @bp.patch("/licenses/<license_id>/extend")
    @requires("licenses:write")
    def extend_license(license_id: str) -> Response:
        fields = Fields(read_json_body(max_body))
        reject_unknown(fields, {"expiresAt", "expires_at"})
        if not fields.present("expiresAt", "expires_at"):
            raise InvalidRequest("'expiresAt' is required (null makes the license perpetual).")
        raw = fields.raw("expiresAt", "expires_at")
        expires_at = None if raw is None else parse_timestamp(raw, "expiresAt")
        lic = existing(license_id)
        not_revoked(lic, "extended")
        updated = licenses.update(lic.id, announce=announce, expires_at=expires_at)
        audit(store, "license.extend", lic.id, expires_at=raw)
        return one(updated)

    @bp.delete("/licenses/<license_id>/devices/<hwuid>")
    @requires("licenses:write")
    def release_device(license_id: str, hwuid: str) -> Response:
        existing(license_id)
        if not licenses.release_device(license_id, hwuid, announce=announce):
            raise NotFound("That device is not bound to this license.")
        audit(store, "license.device_release", license_id, hwuid=hwuid)
        return one(licenses.get(license_id))

    def _set_status(license_id: str, status: str) -> LicenseRecord:
        lic = licenses.set_status(license_id, status, announce=announce)
        if lic is None:
            raise NotFound("License not found.")
        return lic
