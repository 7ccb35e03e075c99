"""Periodic maintenance of an issuer's store: what ``flask licensechain maintenance run``
does (daily, from cron), and what a long-running worker may call between jobs.

- Retention (``store/retention.py``): client IPs and user agents older than
  ``LICENSECHAIN_RETENTION_DAYS_IP`` days are truncated or erased.
- Signing keys whose last token has expired are retired (their private half dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .state import IssuerState
from .store.retention import apply_retention


@dataclass(frozen=True)
class MaintenanceReport:
    """``retention``: rows reduced per ``table.column``; ``cutoff``: rows dated before it
    were reduced; ``retired_keys``: signing keys retired."""

    retention: dict[str, int]
    cutoff: datetime
    retired_keys: int


def run_maintenance(state: IssuerState, *, now: datetime | None = None) -> MaintenanceReport:
    """Run every maintenance job once. Idempotent; safe beside serving workers.

    :raises Unavailable: the store is down.
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=state.settings.retention_days_ip)
    retention = apply_retention(state.store.database, older_than=cutoff)
    retired = state.store.signing_keys.retire_expired(now)
    return MaintenanceReport(retention=retention, cutoff=cutoff, retired_keys=retired)


__all__ = ["MaintenanceReport", "run_maintenance"]
