"""Overview: licenses by status, the last 7 days of verifications (valid and refused, by
reason), recent security anomalies and recent audit events.

An app-limited user sees the figures of its apps only. Audit events and anomalies show only
to roles with ``audit:read``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from flask import render_template

from ...api.analytics_report import verification_report
from ...state import get_issuer_state
from ..auth import requires_scope, user_can
from ..blueprint import bp
from .audit_log import ANOMALY_ACTIONS, recent_events
from .common import visible_app_ids

#: the statuses shown, in order (the keys of ``LicenseRepository.stats``)
STATUS_KEYS: Final = ("total", "active", "expired", "suspended", "revoked")
#: how many recent events and anomalies the page lists
RECENT: Final = 10

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Overview", "console.overview", "licenses:read")


def _stats(apps: tuple[str, ...] | None) -> dict[str, int]:
    store = get_issuer_state().store
    if apps is None:
        return store.licenses.stats()
    total: Counter[str] = Counter()
    for app_id in apps:
        total.update(store.licenses.stats(app_id=app_id))
    return {key: total.get(key, 0) for key in STATUS_KEYS}


def _verifications(apps: tuple[str, ...] | None) -> dict[str, Any]:
    tally = get_issuer_state().store.verification_tally
    if apps is None:
        return verification_report(tally, "7d")
    reports = [verification_report(tally, "7d", app_id=app_id) for app_id in apps]
    totals: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for report in reports:
        totals.update(report["totals"])
        outcomes.update(report["outcomes"])
    return {"totals": dict(totals), "outcomes": dict(outcomes)}


@bp.get("/overview")
@requires_scope("licenses:read")
def overview() -> Any:
    apps = visible_app_ids()
    report = _verifications(apps)
    failures = sorted(
        ((outcome, count) for outcome, count in report["outcomes"].items() if outcome != "valid"),
        key=lambda item: (-item[1], item[0]),
    )
    audit_visible = user_can("audit:read")
    return render_template(
        "console/pages/overview.html",
        stats=_stats(apps),
        status_keys=STATUS_KEYS,
        totals=report["totals"],
        failures=failures,
        events=recent_events(limit=RECENT) if audit_visible else [],
        anomalies=recent_events(limit=RECENT, actions=ANOMALY_ACTIONS) if audit_visible else [],
        audit_visible=audit_visible,
    )
