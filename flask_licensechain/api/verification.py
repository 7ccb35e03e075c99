"""Deciding a verification: the license, its status, the app and the hardware binding.

The outcome order is fixed: unknown key, then another app's key, then the license status,
then the hardware id. Only a passing license reaches the device rules, so a refused request
never binds a device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from ..core.contract import STATUS_REASON, Reason
from ..core.errors import NotFound
from ..monitoring.signals import observe_device
from ..store import AppRecord, BindOutcome, LicenseRecord, LicenseRepository
from ..store.licenses import LAST_SEEN_RESOLUTION


@dataclass(frozen=True, slots=True)
class Decision:
    reason: str | None  # None: valid
    status: str | None = None  # the license's status, when the reason may tell it
    license: LicenseRecord | None = None
    app: AppRecord | None = None
    hw_bound: bool = False
    #: the license the key named and its app, when known (a refusal too): analytics count it
    license_id: str | None = None
    app_id: str | None = None


NOT_FOUND: Final = Decision(Reason.LICENSE_NOT_FOUND)

#: binds a hardware id to a license (the service layer's ``bind_device``, which records a
#: new binding): ``(license, hwuid, now) -> BindOutcome``; raises ``NotFound``
Bind = Callable[[LicenseRecord, str, datetime], BindOutcome]


def decide(
    licenses: LicenseRepository,
    key: str,
    *,
    app_id: str | None,
    hwuid: str | None,
    now: datetime,
    bind: Bind | None = None,
) -> Decision:
    """The outcome of verifying ``key`` (module docstring for the order). ``bind`` binds a
    new hardware id (default: ``licenses.bind_device``, which records nothing)."""
    found = licenses.find_for_verification(key)
    if found is None:
        return NOT_FOUND
    lic, app = found
    if app_id is not None and app_id != lic.app_id:
        return _refused(Reason.APP_MISMATCH, None, lic)
    status = lic.effective_status(now)
    if status != "ACTIVE":
        return _refused(STATUS_REASON[status], status, lic)
    if hwuid is None:
        if lic.require_hwuid:
            return _refused(Reason.HARDWARE_ID_REQUIRED, status, lic)
        return Decision(None, status, lic, app, False, lic.id, lic.app_id)
    if bind is None:
        bind = lambda lic, hwuid, now: licenses.bind_device(lic.id, hwuid, now)  # noqa: E731
    return _check_device(bind, lic, app, hwuid, now)


def _refused(reason: str, status: str | None, lic: LicenseRecord) -> Decision:
    """A refusal of a known license (the analytics count it under the license)."""
    return Decision(reason, status, license_id=lic.id, app_id=lic.app_id)


def _check_device(
    bind: Bind, lic: LicenseRecord, app: AppRecord, hwuid: str, now: datetime
) -> Decision:
    known = next((d for d in lic.devices if d.hwuid == hwuid), None)
    # lastSeenAt is refreshed at most once per resolution: a repeat verify stays a pure read.
    if known is not None and now - known.last_seen_at < LAST_SEEN_RESOLUTION:
        return Decision(None, "ACTIVE", lic, app, True, lic.id, lic.app_id)
    # New device, or a known one due for a lastSeenAt refresh: the store binds atomically,
    # so parallel requests never bind more than maxDevices.
    try:
        outcome = bind(lic, hwuid, now)
    except NotFound:  # deleted since we read it
        return NOT_FOUND
    observe_device(outcome.result, lic.id, lic.app_id)
    if not outcome.ok:
        return _refused(Reason.HARDWARE_ID_MISMATCH, "ACTIVE", lic)
    return Decision(
        None, "ACTIVE", replace(lic, devices=outcome.devices), app, True, lic.id, lic.app_id
    )
