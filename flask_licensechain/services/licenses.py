"""License changes: create, update, status changes, extend, device bind and release.

Actions (VOCABULARY): ``license.create``, ``license.update``, ``license.revoke``,
``license.suspend``, ``license.activate``, ``license.extend``, ``device.bind``,
``device.release``. Each runs in one unit of work: the license row is locked first
(``LicenseRepository.locked``), so the rules below and the recorded ``[before, after]``
see the state the change starts from. The store writes, in the same transaction, the
revocations a change needs (``store/revocations.py``); they are announced to the denylist
once the unit has committed (``announce_after_commit``).

Personal data (``issued_to``, ``issued_email``, ``metadata``, hardware ids) goes to
``Change.personal``; everything else to ``Change.data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from ..core.errors import Conflict, NotFound
from ..state import IssuerState
from ..store import Actor, BindOutcome, Change, LicenseRecord, Store, UnitOfWork
from . import announce_after_commit, diff, plain

#: license fields recorded in ``Change.data``
LICENSE_FIELDS: Final = ("plan", "expires_at", "features", "max_devices", "require_hwuid")
#: license fields recorded in ``Change.personal`` (the licensee, the seller's free metadata)
PERSONAL_FIELDS: Final = ("issued_to", "issued_email", "metadata")
#: the statuses a client may set; EXPIRED follows from ``expires_at``
STATUS_ACTIONS: Final = {"REVOKED": "revoke", "SUSPENDED": "suspend", "ACTIVE": "activate"}


def _values(lic: LicenseRecord, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: plain(getattr(lic, name)) for name in fields}


def _locked(store: Store, license_id: str) -> LicenseRecord:
    lic = store.licenses.locked(license_id)
    if lic is None:
        raise NotFound("License not found.")
    return lic


def _not_revoked(lic: LicenseRecord, action: str) -> None:
    if lic.status == "REVOKED":
        raise Conflict(f"A revoked license cannot be {action}.")


def create_license(
    state: IssuerState, actor: Actor, *, app_id: str, **fields: Any
) -> LicenseRecord:
    """A new license of ``app_id`` (``fields``: the keyword arguments of
    ``LicenseRepository.create``). Raises ``NotFound`` (no such app), ``InvalidRequest``,
    ``Unavailable`` (nothing written)."""
    with state.store.unit_of_work(actor) as unit:
        lic = state.store.licenses.create(app_id, **fields)
        personal = {k: v for k, v in _values(lic, PERSONAL_FIELDS).items() if v}
        unit.record(
            Change(
                action="license.create",
                target=lic.id,
                app_id=lic.app_id,
                data={"status": lic.status, **_values(lic, LICENSE_FIELDS)},
                personal=personal,
                subject=lic,
            )
        )
    return lic


def _record_update(
    unit: UnitOfWork, action: str, before: LicenseRecord, after: LicenseRecord
) -> None:
    changed = diff(_values(before, LICENSE_FIELDS), _values(after, LICENSE_FIELDS), LICENSE_FIELDS)
    personal = diff(
        _values(before, PERSONAL_FIELDS), _values(after, PERSONAL_FIELDS), PERSONAL_FIELDS
    )
    unit.record(
        Change(
            action=action,
            target=after.id,
            app_id=after.app_id,
            data={"changes": changed, "personalFields": sorted(personal)},
            personal={"changes": personal} if personal else {},
            subject=after,
        )
    )


def _set_status(
    state: IssuerState, unit: UnitOfWork, lic: LicenseRecord, status: str, reason: str | None
) -> LicenseRecord:
    """The one path of every status change: a revoked license stays revoked (409; revoking
    twice is fine), the revocation records written with the change, the audit event when the
    status moved."""
    if status not in STATUS_ACTIONS:
        raise ValueError(f"not a settable status: {status!r}")
    if status != "REVOKED":
        _not_revoked(lic, "suspended" if status == "SUSPENDED" else "activated")
    announce = announce_after_commit(unit, state.denylist)
    after = state.store.licenses.set_status(lic.id, status, announce=announce)
    if after is None:
        raise NotFound("License not found.")
    if lic.status != status:
        data: dict[str, Any] = {"changes": {"status": [lic.status, status]}}
        if status == "REVOKED":
            data["reason"] = reason
        unit.record(
            Change(
                action=f"license.{STATUS_ACTIONS[status]}",
                target=after.id,
                app_id=after.app_id,
                data=data,
                subject=after,
            )
        )
    return after


def change_status(
    state: IssuerState, actor: Actor, license_id: str, status: str, *, reason: str | None = None
) -> LicenseRecord:
    """Set ``status`` (``ACTIVE``, ``SUSPENDED``, ``REVOKED``): revoke and suspend block the
    license's outstanding tokens, activate lifts that. Raises ``NotFound``, ``Conflict`` (a
    revoked license cannot be suspended or activated), ``Unavailable``."""
    with state.store.unit_of_work(actor) as unit:
        return _set_status(state, unit, _locked(state.store, license_id), status, reason)


def update_license(
    state: IssuerState,
    actor: Actor,
    license_id: str,
    *,
    changes: Mapping[str, Any],
    status: str | None = None,
    reason: str | None = None,
) -> LicenseRecord:
    """A status change (as ``change_status``) and the field ``changes`` (the keyword
    arguments of ``LicenseRepository.update``), in one unit. A change that narrows the
    license voids its outstanding tokens. Raises ``NotFound``, ``Conflict``,
    ``InvalidRequest``, ``Unavailable``."""
    store = state.store
    with store.unit_of_work(actor) as unit:
        lic = _locked(store, license_id)
        if status is not None:
            lic = _set_status(state, unit, lic, status, reason)
        if not changes:
            return lic
        announce = announce_after_commit(unit, state.denylist)
        after = store.licenses.update(lic.id, announce=announce, **changes)
        if after is None:
            raise NotFound("License not found.")
        _record_update(unit, "license.update", lic, after)
    return after


def extend_license(
    state: IssuerState, actor: Actor, license_id: str, *, expires_at: datetime | None
) -> LicenseRecord:
    """Set the expiry (``None``: perpetual). Raises ``NotFound``, ``Conflict`` (revoked),
    ``Unavailable``."""
    store = state.store
    with store.unit_of_work(actor) as unit:
        lic = _locked(store, license_id)
        _not_revoked(lic, "extended")
        announce = announce_after_commit(unit, state.denylist)
        after = store.licenses.update(lic.id, announce=announce, expires_at=expires_at)
        if after is None:
            raise NotFound("License not found.")
        _record_update(unit, "license.extend", lic, after)
    return after


def release_device(
    state: IssuerState, actor: Actor, license_id: str, *, hwuid: str
) -> LicenseRecord:
    """Unbind ``hwuid``; the license's tokens issued before are void. Raises ``NotFound``
    (no such license, or the device is not bound to it), ``Unavailable``."""
    store = state.store
    with store.unit_of_work(actor) as unit:
        lic = _locked(store, license_id)
        announce = announce_after_commit(unit, state.denylist)
        if not store.licenses.release_device(lic.id, hwuid, announce=announce):
            raise NotFound("That device is not bound to this license.")
        after = store.licenses.get(lic.id)
        if after is None:  # pragma: no cover - the row is locked by this unit
            raise NotFound("License not found.")
        unit.record(
            Change(
                action="device.release",
                target=lic.id,
                app_id=lic.app_id,
                data={"devices": len(after.devices)},
                personal={"hwuid": hwuid},
                subject=after,
            )
        )
    return after


def bind_device(
    store: Store, actor: Actor, lic: LicenseRecord, *, hwuid: str, now: datetime
) -> BindOutcome:
    """The verify path's hardware binding (``LicenseRepository.bind_device``). A known
    device or a full license is answered by one read, with no unit and no write; only the
    locked half opens a unit, and only a new binding records ``device.bind``. Raises
    ``NotFound``, ``Unavailable``."""
    settled = store.licenses.settled_binding(lic.id, hwuid, now)
    if settled is not None:
        return settled
    with store.unit_of_work(actor) as unit:
        outcome = store.licenses.bind_locked(lic.id, hwuid, now)
        if outcome.result == "bound":
            unit.record(
                Change(
                    action="device.bind",
                    target=lic.id,
                    app_id=lic.app_id,
                    data={"devices": len(outcome.devices)},
                    personal={"hwuid": hwuid},
                    subject=replace(lic, devices=outcome.devices),
                )
            )
    return outcome
