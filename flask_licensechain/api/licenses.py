"""Authenticated license endpoints: create, list, get, update, status changes, statistics,
analytics, devices. Every license route takes the license id or its key.

Every change goes through the service layer (``services/licenses.py``), with the request's
actor: every status change (``/revoke``, ``/suspend``, ``/activate``, ``DELETE``, an update
with a ``status``, ``/status``) through its one status path (the same 409 rules, revocation
records and audit events). The store records in the same transaction the revocation a change
needs (revoke and suspend block the license's outstanding tokens, activate lifts that; a
narrowing voids the tokens issued before it; see ``store/revocations.py``), and the
committed entries are then announced through the denylist, so gates refuse at once; the
store stays the record that every denylist follows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from flask import Response, request

from .. import field_limits as limits
from ..core.contract import LICENSE_STATUSES
from ..core.errors import InvalidRequest, NotFound
from ..monitoring.signals import observe_device
from ..serialize import license_json, parse_timestamp
from ..services import licenses as service
from ..state import IssuerState, get_issuer_state
from ..store import LicenseRecord
from ..store.apps import AppScope
from .analytics_report import query_period, verification_report
from .auth import (
    app_filter,
    check_app_visible,
    key_scope,
    request_actor,
    requires,
    visible_license,
)
from .blueprint import bp
from .body import Fields, read_json_body, reject_unknown
from .http import json_response
from .query import query_app_id, query_int

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
#: the app id LicenseChain's clients repeat in a create body (it must equal the path's)
APP_ID_NAMES: Final = ("appId", "app_id")
EXPIRY_NAMES: Final = _LICENSE_FIELDS["expires_at"][0]
#: the statuses a client may set (in any case); EXPIRED follows from expiresAt
SETTABLE_STATUSES: Final = ("ACTIVE", "SUSPENDED", "REVOKED")


def _non_null(fields: Fields, names: tuple[str, ...], value: Any) -> Any:
    if value is None:
        raise InvalidRequest(f"'{names[0]}' must not be null.")
    return value


def license_changes(fields: Fields, extra: set[str] | None = None) -> dict[str, Any]:
    """The store's keyword arguments for the fields present in a create or update body.

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


def _one(lic: LicenseRecord | None, status: int = 200) -> Response:
    if lic is None:
        raise NotFound("License not found.")
    return json_response(license_json(lic, datetime.now(UTC)), status)


def _existing(state: IssuerState, ref: str) -> LicenseRecord:
    """The license ``ref`` names (its id or its key) that the caller may see, else 404."""
    return visible_license(state.store.licenses.get_by_id_or_key(ref))


def _page(state: IssuerState, app_id: str | None, scope: AppScope) -> Response:
    number = query_int("page", 1, limits.PAGE)
    size = query_int("limit", limits.DEFAULT_PAGE_SIZE, limits.PAGE_SIZE)
    now = datetime.now(UTC)
    records, total = state.store.licenses.list(
        app_id=app_id, status=_query_status(), page=number, limit=size, now=now, scope=scope
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
    """A new license of the app; 201 with the license object. ``appId``/``app_id`` in the
    body may repeat the path's app id (400 when it differs)."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    changes = license_changes(fields, set(APP_ID_NAMES))
    check_body_app_id(fields, app_id)
    check_app_visible(app_id)
    lic = service.create_license(state, request_actor(), app_id=app_id, **changes)
    return _one(lic, 201)


@bp.get("/apps/<app_id>/licenses")
@requires("licenses:read")
def app_licenses(app_id: str) -> Response:
    """One page of an app's licenses (``page``, ``limit``, ``status`` query parameters)."""
    state = get_issuer_state()
    check_app_visible(app_id)
    return _page(state, app_id, key_scope())


@bp.get("/licenses")
@requires("licenses:read")
def list_licenses() -> Response:
    """One page of licenses, of every app or of ``app_id``."""
    return _page(get_issuer_state(), None, app_filter(query_app_id()))


@bp.get("/licenses/stats")
@requires("licenses:read")
def license_stats() -> Response:
    """License counts by status, of every app or of ``app_id`` (404 for an unknown app)."""
    state = get_issuer_state()
    return json_response(state.store.licenses.stats(scope=app_filter(query_app_id())))


@bp.get("/licenses/<lc_license:ref>")
@requires("licenses:read")
def get_license(ref: str) -> Response:
    """One license, by id or key."""
    return _one(_existing(get_issuer_state(), ref))


@bp.get("/licenses/<lc_license:ref>/analytics")
@requires("licenses:read")
def license_analytics(ref: str) -> Response:
    """The license's verifications by outcome per day over ``period``."""
    state = get_issuer_state()
    period = query_period()
    lic = _existing(state, ref)
    report = verification_report(state.store.verification_tally, period, license_id=lic.id)
    return json_response({"licenseId": lic.id, "appId": lic.app_id, **report})


def _change_status(
    state: IssuerState, ref: str, status: str, reason: str | None = None
) -> LicenseRecord:
    """The license ``ref`` names (404 unless visible) moved to ``status``."""
    lic = _existing(state, ref)
    return service.change_status(state, request_actor(), lic.id, status, reason=reason)


def _update(ref: str) -> Response:
    """PATCH and PUT: the fields present (camelCase or snake_case names), and a ``status``
    through the status path, in one unit of work."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    changes = license_changes(fields, {"status", "reason"})
    status = requested_status(fields)
    reason = fields.string("reason", max_length=limits.REASON)
    lic = _existing(state, ref)
    updated = service.update_license(
        state, request_actor(), lic.id, changes=changes, status=status, reason=reason
    )
    return _one(updated)


@bp.patch("/licenses/<lc_license:ref>")
@requires("licenses:write")
def update_license(ref: str) -> Response:
    """Change the fields present; a ``status`` changes as /revoke, /suspend, /activate."""
    return _update(ref)


@bp.put("/licenses/<lc_license:ref>")
@requires("licenses:write")
def replace_license(ref: str) -> Response:
    """The same as PATCH (LicenseChain's SDKs update with PUT)."""
    return _update(ref)


def _revoke(ref: str) -> Response:
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, {"reason"})
    reason = fields.string("reason", max_length=limits.REASON)
    return _one(_change_status(state, ref, "REVOKED", reason))


@bp.patch("/licenses/<lc_license:ref>/revoke")
@requires("licenses:write")
def revoke_license(ref: str) -> Response:
    """Revoke for good; the license's outstanding tokens are refused at once."""
    return _revoke(ref)


@bp.delete("/licenses/<lc_license:ref>")
@requires("licenses:write")
def delete_license(ref: str) -> Response:
    """LicenseChain's "delete": the same as /revoke; the record is kept."""
    return _revoke(ref)


@bp.patch("/licenses/<lc_license:ref>/suspend")
@requires("licenses:suspend")
def suspend_license(ref: str) -> Response:
    """Suspend (reversible); the license's outstanding tokens are refused at once."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    return _one(_change_status(state, ref, "SUSPENDED"))


@bp.patch("/licenses/<lc_license:ref>/activate")
@requires("licenses:suspend")
def activate_license(ref: str) -> Response:
    """Lift a suspension (a revoked license stays revoked: 409)."""
    state = get_issuer_state()
    reject_unknown(Fields(read_json_body(state.settings.max_body_bytes)), set())
    return _one(_change_status(state, ref, "ACTIVE"))


@bp.patch("/licenses/<lc_license:ref>/status")
@requires("licenses:write")
def set_license_status(ref: str) -> Response:
    """Set the status (``ACTIVE``, ``SUSPENDED``, ``REVOKED``, any case) as the routes
    above do."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, {"status", "reason"})
    status = requested_status(fields)
    if status is None:
        raise InvalidRequest("'status' is required.")
    reason = fields.string("reason", max_length=limits.REASON)
    return _one(_change_status(state, ref, status, reason))


@bp.patch("/licenses/<lc_license:ref>/extend")
@requires("licenses:write")
def extend_license(ref: str) -> Response:
    """Set the expiry (``expiresAt``; null makes the license perpetual)."""
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    reject_unknown(fields, set(EXPIRY_NAMES))
    if not fields.present(*EXPIRY_NAMES):
        raise InvalidRequest("'expiresAt' is required (null makes the license perpetual).")
    raw = fields.raw(*EXPIRY_NAMES)
    expires_at = None if raw is None else parse_timestamp(raw, "expiresAt")
    lic = _existing(state, ref)
    return _one(service.extend_license(state, request_actor(), lic.id, expires_at=expires_at))


def _release(ref: str, hwuid: str) -> Response:
    state = get_issuer_state()
    lic = _existing(state, ref)
    released = service.release_device(state, request_actor(), lic.id, hwuid=hwuid)
    observe_device("released", lic.id, lic.app_id)
    return _one(released)


@bp.delete("/licenses/<lc_license:ref>/devices/<lc_hwuid:hwuid>", merge_slashes=False)
@requires("devices:write")
def release_device(ref: str, hwuid: str) -> Response:
    """Unbind a hardware id (percent-encoded in the path, ``/`` included)."""
    return _release(ref, hwuid)


@bp.delete("/licenses/<lc_license:ref>/devices")
@requires("devices:write")
def release_device_by_query(ref: str) -> Response:
    """Unbind a hardware id given as ``?hwuid=`` or ``{"hwuid"}``: any id, untouched by URL
    normalization."""
    hwuid = request.args.get("hwuid")
    if not hwuid:
        state = get_issuer_state()
        fields = Fields(read_json_body(state.settings.max_body_bytes))
        reject_unknown(fields, {"hwuid", "hardwareId"})
        hwuid = fields.string("hwuid", "hardwareId", max_length=limits.HWUID)
    if not hwuid:
        raise InvalidRequest("'hwuid' is required (query parameter or body).")
    return _release(ref, hwuid)
