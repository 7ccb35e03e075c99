"""What the gate decided about a request, read back for the access log and the metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .observe import RequestRecord

#: Where the gate leaves its ``GateResult`` (``licensechain_middleware.engine``).
RESULT_KEY = "licensechain.result"


def apply_decision(env: Mapping[str, Any], record: RequestRecord) -> None:
    """Copy allow/deny, reason and subject from the gate's ``licensechain.result``."""
    decision = env.get(RESULT_KEY)
    if decision is None:
        # No gate decision: refused before the gate (or no gate in front of the proxy).
        record.decision = "allow" if record.reached_upstream else "deny"
        return
    record.decision = "allow" if decision.allowed else "deny"
    record.reason = decision.reason
    record.sub = decision.subject
