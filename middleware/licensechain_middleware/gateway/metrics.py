"""Prometheus metrics of the gateway.

Under gunicorn or uvicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory before the server starts (``licensechain-gateway`` does it)
and ``/_licensechain/metrics`` answers for all workers together. Without it each
worker answers for itself.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from .metrics_env import MULTIPROC_ENV

DECISIONS = Counter(
    "licensechain_gateway_decisions_total",
    "Gate decisions, by decision (allow/deny) and reason.",
    ["decision", "reason"],
)
RATE_LIMITED = Counter(
    "licensechain_gateway_rate_limited_total", "Requests answered 429 by the gate."
)
JWKS_FETCHES = Counter(
    "licensechain_gateway_jwks_fetches_total", "JWKS documents fetched, by outcome.", ["outcome"]
)
TOKEN_CACHE = Counter(
    "licensechain_gateway_token_cache_total",
    "Verified-token cache lookups, by result (hit/miss).",
    ["result"],
)
UPSTREAM_SECONDS = Histogram(
    "licensechain_gateway_upstream_seconds",
    "Time until the upstream's response headers, by outcome (status class or error).",
    ["outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUESTS = Counter(
    "licensechain_gateway_requests_total", "Requests answered, by status class.", ["status"]
)


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the lookup validates and locks each time,
    and the label values here come from small fixed sets (reasons, status classes)."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type, for every worker when multiprocess is on."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class EngineCounters:
    """Moves the gate's own running counts into Prometheus counters.

    The JWKS source counts its fetches (``fetch_count``) and the verifier may count
    its cache hits and misses (``cache_hits``/``cache_misses``); after each request
    the growth since the last look is added. Counting by difference keeps the hot
    path free of callbacks and works with the multiprocess collector.
    """

    def __init__(self, verifier: object, keys: object) -> None:
        self._verifier = verifier
        self._keys = keys
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._sources = [
            (keys, "fetch_count", JWKS_FETCHES.labels("attempt")),
            (verifier, "cache_hits", TOKEN_CACHE.labels("hit")),
            (verifier, "cache_misses", TOKEN_CACHE.labels("miss")),
        ]
        self._sources = [s for s in self._sources if isinstance(getattr(s[0], s[1], None), int)]

    def sync(self) -> None:
        if not self._sources:
            return
        with self._lock:
            for owner, name, counter in self._sources:
                now = getattr(owner, name)
                delta = now - self._seen.get(name, 0)
                if delta > 0:
                    counter.inc(delta)
                    self._seen[name] = now


def mark_process_dead(pid: int) -> None:
    """Tell the multiprocess collector that a worker is gone (gunicorn ``child_exit``)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
