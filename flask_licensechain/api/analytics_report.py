"""Verification analytics as the API answers them: outcomes per UTC day over a period.

A report is ``{"period", "from", "to", "days": [{"date", "total", "valid", "invalid",
"outcomes": {outcome: count}}], "totals": {"total", "valid", "invalid"}, "outcomes"}``,
with one entry per day of the period (oldest first, days without verifications at zero).
``outcomes`` are ``valid`` and the verify refusal reasons (``license_not_found``,
``app_mismatch``, ``license_expired``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

from flask import request

from ..core.errors import InvalidRequest
from ..store.analytics import VALID_OUTCOME, VerificationTally, day_range
from ..store.apps import EVERY_APP, AppScope

#: the periods LicenseChain's clients ask for -> days
PERIODS: Final[Mapping[str, int]] = {"7d": 7, "30d": 30, "90d": 90, "1y": 365}
DEFAULT_PERIOD: Final = "30d"


def query_period() -> str:
    """The ``period`` query parameter (one of ``PERIODS``; default 30d), else 400."""
    values = request.args.getlist("period")
    if len(values) > 1:
        raise InvalidRequest("Give 'period' once.")
    value = values[0] if values else ""
    if value == "":
        return DEFAULT_PERIOD
    if value not in PERIODS:
        raise InvalidRequest(f"'period' must be one of {', '.join(PERIODS)}.")
    return value


def verification_report(
    tally: VerificationTally,
    period: str,
    *,
    app_id: str | None = None,
    license_id: str | None = None,
    now: datetime | None = None,
    scope: AppScope = EVERY_APP,
) -> dict[str, Any]:
    """The report of ``period`` ending today (UTC), of one app and/or license when given.

    This process's pending counts are written first, so its own verifications show at once.
    """
    tally.flush()
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    days = day_range(PERIODS[period], today)
    counts = tally.repository.per_day(
        days[0], days[-1], app_id=app_id, license_id=license_id, scope=scope
    )
    return build_report(period, days, counts)


def build_report(
    period: str, days: list[date], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    overall: dict[str, int] = {}
    for day in days:
        outcomes = dict(counts.get(day.isoformat(), {}))
        total = sum(outcomes.values())
        valid = outcomes.get(VALID_OUTCOME, 0)
        entries.append(
            {
                "date": day.isoformat(),
                "total": total,
                "valid": valid,
                "invalid": total - valid,
                "outcomes": outcomes,
            }
        )
        for outcome, count in outcomes.items():
            overall[outcome] = overall.get(outcome, 0) + count
    total = sum(overall.values())
    valid = overall.get(VALID_OUTCOME, 0)
    return {
        "period": period,
        "from": days[0].isoformat(),
        "to": days[-1].isoformat(),
        "days": entries,
        "totals": {"total": total, "valid": valid, "invalid": total - valid},
        "outcomes": overall,
    }
