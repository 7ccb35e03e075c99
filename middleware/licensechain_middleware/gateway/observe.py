"""One record per request, for the JSON access log and the metrics.

The outermost layer makes the record and puts it in the environ (WSGI) or scope
(ASGI) under ``RECORD_KEY``; the proxy fills in the upstream's part. The record
never holds the token: only the subject, the decision and its reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import metrics

RECORD_KEY = "licensechain.gateway.record"

access_log = logging.getLogger("licensechain.gateway.access")


@dataclass(slots=True)
class RequestRecord:
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    request_id: str | None = None
    status: int = 0
    sub: str | None = None
    decision: str = "deny"
    reason: str | None = None
    upstream_status: int | None = None
    upstream_seconds: float | None = None
    upstream_error: str | None = None

    @property
    def reached_upstream(self) -> bool:
        return self.upstream_status is not None or self.upstream_error is not None

    def finish(self, *, log_enabled: bool) -> None:
        """Count the request and write its access-log line."""
        latency = time.perf_counter() - self.started
        metrics.child(metrics.DECISIONS, self.decision, self.reason or "none").inc()
        metrics.child(metrics.REQUESTS, metrics.status_class(self.status)).inc()
        if self.status == 429:
            metrics.RATE_LIMITED.inc()
        if self.upstream_seconds is not None:
            outcome = (
                self.upstream_error
                if self.upstream_status is None
                else metrics.status_class(self.upstream_status)
            )
            metrics.child(metrics.UPSTREAM_SECONDS, outcome or "error").observe(
                self.upstream_seconds
            )
        if log_enabled and access_log.isEnabledFor(logging.INFO):
            access_log.info(self.as_json(latency))

    def as_json(self, latency: float) -> str:
        return json.dumps(
            {
                "ts": round(time.time(), 3),
                "request_id": self.request_id,
                "method": self.method,
                "path": self.path,
                "status": self.status,
                "sub": self.sub,
                "decision": self.decision,
                "reason": self.reason,
                "upstream_status": self.upstream_status,
                "upstream_error": self.upstream_error,
                "upstream_ms": None
                if self.upstream_seconds is None
                else round(self.upstream_seconds * 1000, 3),
                "latency_ms": round(latency * 1000, 3),
            },
            separators=(",", ":"),
        )


def record_of_environ(environ: Mapping[str, Any]) -> RequestRecord | None:
    record = environ.get(RECORD_KEY)
    return record if isinstance(record, RequestRecord) else None


def configure_access_log(enabled: bool) -> None:
    """Plain JSON lines on stderr; the server's own logging config may replace this."""
    if not enabled or access_log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
