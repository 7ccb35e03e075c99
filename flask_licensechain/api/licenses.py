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
from werkzeug.routing import BaseConverter

from ..core.contract import LICENSE_STATUSES
from ..core.errors import Conflict, InvalidRequest, NotFound
from ..store import LicenseRecord
from .admin import audit
from .analytics_report import query_period, verification_report
from .auth import app_filter, check_app_visible, scope_guard, visible_license
from .body import Fields, parse_timestamp, read_json_body, reject_unknown
from .http import json_response
from .query import query_app_id, query_int
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
#: the app id LicenseChain's clients repeat in a create body (it must equal the path's)
APP_ID_NAMES: Final = ("appId", "app_id")
EXPIRY_NAMES: Final = _LICENSE_FIELDS["expires_at"][0]
#: status a client may set -> the status change it means (any case is accepted)
SETTABLE_STATUSES: Final = ("ACTIVE", "SUSPENDED", "REVOKED")
HWUID_CONVERTER: Final = "lc_hwuid"
LICENSE_CONVERTER: Final = "lc_license"
#: the fixed paths beside /licenses/<id or key>: never taken for a license reference, so
#: a wrong method on them answers 405, not "license not found"
RESERVED_LICENSE_PATHS: Final = (
    "verify",
    "validate-hardware",
    "jwks",
    "introspect",
    "revoke-token",
    "stats",
)


class LicenseRefConverter(BaseConverter):
    """A license id or key in a URL path: one segment, not one of the fixed paths."""

    regex = "(?!(?:" + "|".join(RESERVED_LICENSE_PATHS) + ")$)[^/]+"


class HwuidConverter(BaseConverter):
    """A hardware id in a URL path: the rest of the path, slashes and all.

    Verify accepts any hardware id up to 256 characters, ``/`` included, so the release
    route must take every one of them; the rule also turns off slash merging. A client that
    normalizes dot segments (``.``, ``..``) cannot send those in a path: the query form
    ``DELETE .../devices?hwuid=`` takes any hardware id.
    """

    regex = r"[\s\S]+"
    part_isolating = False


def _non_null(fields: Fields, names: tuple[str, ...], value: Any) -> Any:
    if value is None:
        raise InvalidRequest(f"'{names[0]}' must not be null.")
    return value


def license_changes(fields: Fields, extra: set[str] | None = None) -> dict[str, Any]:
    """The store's keyword arguments for the fields present in a create or PATCH body.

    ``extra`` names members the caller reads itself. An empty ``expiresAt`` is "not given":
    LicenseChain's clients send ``""`` for "no expiry".
    """
    reject_unknown(fields, _KNOWN_NAMES | (extra or set()))
    changes: dict[str, Any] = {}
    for field, (names, parse) in _LICENSE_FIELDS.items():
        if field == "expires_at" and fields.raw(*names) == "":
            continue
        if fields.present(*names):
            changes[field] = parse(fields, names)
    return changes


def requested_status(fields: Fields) -> str | None:
    """The ``status`` member (any case) as a stored status, ``None`` when absent."""
    if not fields.present("status"):
        return None
    raw = fields.raw("status")
    wanted = raw.upper() if isinstance(raw, str) else None
    if wanted not in SETTABLE_STATUSES:
        raise InvalidRequest(
            f"'status' must be one of {', '.join(SETTABLE_STATUSES)} (any case); "
            "EXPIRED follows from expiresAt."
        )
    return wanted


def check_body_app_id(fields: Fields, app_id: str) -> None:
    """``appId``/``app_id`` in a create body may only repeat the path's app id."""
    for name in APP_ID_NAMES:
        value = fields.raw(name)
        if fields.present(name) and value is not None and value != app_id:
            raise InvalidRequest(f"'{name}' must equal the app id in the path.")


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

    def existing(ref: str) -> LicenseRecord:
        """The license ``ref`` names (its id or its key) that the caller may see."""
        return visible_license(licenses.get_by_id_or_key(ref))

    def page(app_id: str | None) -> Response:
        number = query_int("page", 1, MAX_PAGE)
        size = query_int("limit", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
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
        fields = Fields(read_json_body(max_body))
        changes = license_changes(fields, set(APP_ID_NAMES))
        check_body_app_id(fields, app_id)
        check_app_visible(app_id)
        lic = licenses.create(app_id, **changes)
        audit(store, "license.create", lic.id, app_id=app_id)
        return one(lic, 201)

    @bp.get("/apps/<app_id>/licenses")
    @requires("licenses:read")
    def app_licenses(app_id: str) -> Response:
        check_app_visible(app_id)
        if store.apps.get(app_id) is None:
            raise NotFound("App not found.")
        return page(app_id)

    @bp.get("/licenses")
    @requires("licenses:read")
    def list_licenses() -> Response:
        return page(app_filter(query_app_id()))

    @bp.get("/licenses/stats")
    @requires("licenses:read")
    def license_stats() -> Response:
        app_id = app_filter(query_app_id())
        if app_id is not None and store.apps.get(app_id) is None:
            raise NotFound("App not found.")
        return json_response(licenses.stats(app_id=app_id))

    @bp.get("/licenses/<lc_license:ref>")
    @requires("licenses:read")
    def get_license(ref: str) -> Response:
        return one(existing(ref))

    @bp.get("/licenses/<lc_license:ref>/analytics")
    @requires("licenses:read")
    def license_analytics(ref: str) -> Response:
        period = query_period()
        lic = existing(ref)
        report = verification_report(store.verification_tally, period, license_id=lic.id)
        return json_response({"licenseId": lic.id, "appId": lic.app_id, **report})

    def update(ref: str) -> Response:
        """PATCH and PUT: the fields present, and a ``status`` through ``change_status``."""
        fields = Fields(read_json_body(max_body))
        changes = license_changes(fields, {"status", "reason"})
        status = requested_status(fields)
        reason = fields.string("reason", max_length=2000)
        lic = existing(ref)
        if status is not None:
            lic = change_status(lic, status, reason=reason)
        if not changes:
            return one(lic)
        updated = licenses.update(lic.id, announce=announce, **changes)
        if updated is not None:
            audit(store, "license.update", updated.id, fields=sorted(changes))
        return one(updated)

    @bp.patch("/licenses/<lc_license:ref>")
    @requires("licenses:write")
    def update_license(ref: str) -> Response:
        return update(ref)

    @bp.put("/licenses/<lc_license:ref>")
    @requires("licenses:write")
    def replace_license(ref: str) -> Response:
        return update(ref)

    def not_revoked(lic: LicenseRecord, action: str) -> None:
        if lic.status == "REVOKED":
            raise Conflict(f"A revoked license cannot be {action}.")

    def change_status(
        lic: LicenseRecord, status: str, *, reason: str | None = None
    ) -> LicenseRecord:
        """The one path of every status change (/revoke, /suspend, /activate, DELETE,
        PATCH with a status, /status): its 409 rules, its revocation records (the store
        writes them with the change and announces them to the denylist) and audit event."""
        if status == "REVOKED":
            previous = lic.status
            lic = _set_status(lic.id, "REVOKED")
            if previous != "REVOKED":
                audit(store, "license.revoke", lic.id, reason=reason)
            return lic
        if status == "SUSPENDED":
            not_revoked(lic, "suspended")
            previous = lic.status
            lic = _set_status(lic.id, "SUSPENDED")
            if previous != "SUSPENDED":
                audit(store, "license.suspend", lic.id)
            return lic
        not_revoked(lic, "activated")
        previous = lic.status
        lic = _set_status(lic.id, "ACTIVE")
        if previous != "ACTIVE":
            audit(store, "license.activate", lic.id)
        return lic

    def revoke(ref: str) -> Response:
        fields = Fields(read_json_body(max_body))
        reject_unknown(fields, {"reason"})
        reason = fields.string("reason", max_length=2000)
        return one(change_status(existing(ref), "REVOKED", reason=reason))

    @bp.patch("/licenses/<lc_license:ref>/revoke")
    @requires("licenses:write")
    def revoke_license(ref: str) -> Response:
        return revoke(ref)

    @bp.delete("/licenses/<lc_license:ref>")
    @requires("licenses:write")
    def delete_license(ref: str) -> Response:
        """LicenseChain's "delete": a revocation; the record is kept."""
        return revoke(ref)

    @bp.patch("/licenses/<lc_license:ref>/suspend")
    @requires("licenses:write")
    def suspend_license(ref: str) -> Response:
        reject_unknown(Fields(read_json_body(max_body)), set())
        return one(change_status(existing(ref), "SUSPENDED"))

    @bp.patch("/licenses/<lc_license:ref>/activate")
    @requires("licenses:write")
    def activate_license(ref: str) -> Response:
        reject_unknown(Fields(read_json_body(max_body)), set())
        return one(change_status(existing(ref), "ACTIVE"))

    @bp.patch("/licenses/<lc_license:ref>/status")
    @requires("licenses:write")
    def set_license_status(ref: str) -> Response:
        fields = Fields(read_json_body(max_body))
        reject_unknown(fields, {"status", "reason"})
        status = requested_status(fields)
        if status is None:
            raise InvalidRequest("'status' is required.")
        reason = fields.string("reason", max_length=2000)
        return one(change_status(existing(ref), status, reason=reason))

    @bp.patch("/licenses/<lc_license:ref>/extend")
    @requires("licenses:write")
    def extend_license(ref: str) -> Response:
        fields = Fields(read_json_body(max_body))
        reject_unknown(fields, {"expiresAt", "expires_at"})
        if not fields.present("expiresAt", "expires_at"):
            raise InvalidRequest("'expiresAt' is required (null makes the license perpetual).")
        raw = fields.raw("expiresAt", "expires_at")
        expires_at = None if raw is None else parse_timestamp(raw, "expiresAt")
        lic = existing(ref)
        not_revoked(lic, "extended")
        updated = licenses.update(lic.id, announce=announce, expires_at=expires_at)
        audit(store, "license.extend", lic.id, expires_at=raw)
        return one(updated)

    def release(ref: str, hwuid: str) -> Response:
        lic = existing(ref)
        if not licenses.release_device(lic.id, hwuid, announce=announce):
            raise NotFound("That device is not bound to this license.")
        audit(store, "license.device_release", lic.id, hwuid=hwuid)
        return one(licenses.get(lic.id))

    @bp.delete("/licenses/<lc_license:ref>/devices/<lc_hwuid:hwuid>", merge_slashes=False)
    @requires("licenses:write")
    def release_device(ref: str, hwuid: str) -> Response:
        return release(ref, hwuid)

    @bp.delete("/licenses/<lc_license:ref>/devices")
    @requires("licenses:write")
    def release_device_by_query(ref: str) -> Response:
        """The hardware id as ``?hwuid=`` or ``{"hwuid"}``: any id, untouched by URL rules."""
        hwuid = request.args.get("hwuid")
        if not hwuid:
            fields = Fields(read_json_body(max_body))
            reject_unknown(fields, {"hwuid", "hardwareId"})
            hwuid = fields.string("hwuid", "hardwareId", max_length=256)
        if not hwuid:
            raise InvalidRequest("'hwuid' is required (query parameter or body).")
        return release(ref, hwuid)

    def _set_status(license_id: str, status: str) -> LicenseRecord:
        lic = licenses.set_status(license_id, status, announce=announce)
        if lic is None:
            raise NotFound("License not found.")
        return lic
