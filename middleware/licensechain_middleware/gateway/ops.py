"""The gateway's own endpoints: liveness, readiness and metrics.

They are matched on the exact path only (no prefix, no header shortcut), before
the gate, so probes need no license; any other path goes through the gate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from flask_licensechain.core.errors import Unavailable

from . import metrics

log = logging.getLogger("licensechain.gateway")

HEALTH_PATH = "/_licensechain/health"
READY_PATH = "/_licensechain/ready"
METRICS_PATH = "/_licensechain/metrics"


@dataclass(frozen=True)
class OpsResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return {200: "200 OK", 405: "405 Method Not Allowed", 503: "503 Service Unavailable"}[
            self.status
        ]


def _json(status: int, data: Mapping[str, object]) -> OpsResponse:
    body = json.dumps(data, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    return OpsResponse(status, headers, body)


class OpsEndpoints:
    def __init__(self, *, metrics_enabled: bool = True) -> None:
        self.paths = {HEALTH_PATH, READY_PATH}
        if metrics_enabled:
            self.paths.add(METRICS_PATH)

    def handles(self, path: str) -> bool:
        return path in self.paths

    @staticmethod
    def wants_readiness(method: str, path: str) -> bool:
        return path == READY_PATH and method in ("GET", "HEAD")

    def answer(
        self, method: str, path: str, readiness: Mapping[str, bool] | None = None
    ) -> OpsResponse:
        """The response for one of ``self.paths``; ``readiness`` is the gate's answer
        (each dependency and whether it can serve now), needed for the ready path."""
        if method not in ("GET", "HEAD"):
            response = _json(405, {"error": "method_not_allowed", "message": "Use GET."})
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        if path == HEALTH_PATH:
            return _json(200, {"status": "ok"})
        if path == READY_PATH:
            return self._ready(readiness or {})
        body, content_type = metrics.exposition()
        return OpsResponse(
            200,
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
            body,
        )

    @staticmethod
    def _ready(checks: Mapping[str, bool]) -> OpsResponse:
        # Only the names of failing dependencies are shown, never why (that is logged).
        failing = sorted(name for name, ok in checks.items() if not ok)
        if failing:
            response = _json(503, {"status": "unavailable", "failing": failing})
            response.headers.append(("Retry-After", str(Unavailable.retry_after)))
            return response
        return _json(200, {"status": "ready"})
