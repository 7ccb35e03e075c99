"""Deciding a verification: the license, its status, the app and the hardware binding.

The outcome order is fixed: unknown key, then another app's key, then the license status,
then the hardware id. Only a passing license reaches the device rules, so a refused request
never binds a device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from ..core.contract import STATUS_REASON, Reason
from ..core.errors import NotFound
from ..store import AppRecord, LicenseRecord, LicenseRepository
from ..store.licenses import LAST_SEEN_RESOLUTION


@dataclass(frozen=True, slots=True)
class Decision:
    reason: str | None  # None: valid
    status: str | None = None  # the license's status, when the reason may tell it
    license: LicenseRecord | None = None
    app: AppRecord | None = None
    hw_bound: bool = False


NOT_FOUND: Final = Decision(Reason.LICENSE_NOT_FOUND)
APP_MISMATCH: Final = Decision(Reason.APP_MISMATCH)


def decide(
    licenses: LicenseRepository,
    key: str,
    *,
    app_id: str | None,
    hwuid: str | None,
    now: datetime,
) -> Decision:
    found = licenses.find_for_verification(key)
    if found is None:
        return NOT_FOUND
    lic, app = found
    if app_id is not None and app_id != lic.app_id:
        return APP_MISMATCH
    status = lic.effective_status(now)
    if status != "ACTIVE":
        return Decision(STATUS_REASON[status], status)
    if hwuid is None:
        if lic.require_hwuid:
            return Decision(Reason.HARDWARE_ID_REQUIRED, status)
        return Decision(None, status, lic, app, hw_bound=False)
    return _check_device(licenses, lic, app, hwuid, now)


def _check_device(
    licenses: LicenseRepository, lic: LicenseRecord, app: AppRecord, hwuid: str, now: datetime
) -> Decision:
    known = next((d for d in lic.devices if d.hwuid == hwuid), None)
    # lastSeenAt is refreshed at most once per resolution: a repeat verify stays a pure read.
    if known is not None and now - known.last_seen_at < LAST_SEEN_RESOLUTION:
        return Decision(None, "ACTIVE", lic, app, hw_bound=True)
    # New device, or a known one due for a lastSeenAt refresh: the store binds atomically,
    # so parallel requests never bind more than maxDevices.
    try:
        outcome = licenses.bind_device(lic.id, hwuid, now)
    except NotFound:  # deleted since we read it
        return NOT_FOUND
    if not outcome.ok:
        return Decision(Reason.HARDWARE_ID_MISMATCH, "ACTIVE")
    return Decision(None, "ACTIVE", replace(lic, devices=outcome.devices), app, hw_bound=True)
