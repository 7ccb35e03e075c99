"""The license server's Prometheus metrics (prometheus-client), one set per process.

Names (``_total`` is added to counters on exposition):

| metric | type | labels | counts |
|---|---|---|---|
| ``licensechain_http_requests_total`` | counter | endpoint, method, status | requests |
| ``licensechain_http_request_duration_seconds`` | histogram | endpoint | request latency, s |
| ``licensechain_verifications_total`` | counter | outcome, reason | verify answers |
| ``licensechain_tokens_issued_total`` | counter | | license tokens signed |
| ``licensechain_revocations_total`` | counter | action | recorded revocations |
| ``licensechain_denylist_synced`` | gauge (livemin) | | 1 when every worker's copy follows |
| ``licensechain_denylist_entries`` | gauge (livemax) | | revocations in force |
| ``licensechain_denylist_store_sequence`` | gauge (livemin) | | store counter the copy matches |
| ``licensechain_auth_failures_total`` | counter | status | admin API 401 and 403 answers |
| ``licensechain_security_anomalies_total`` | counter | signal | ``security.anomaly`` events |

``endpoint`` is the route template (``/v1/licenses/<lc_license:ref>``), never the path a client
sent, so a license key in a URL never becomes a label and the label set stays bounded.

Several worker processes (gunicorn): prometheus-client's multiprocess mode. Set the
environment variable ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, writable by the
workers, *before* the server starts (prometheus-client reads it when first imported), wipe it
at each start, and add ``from flask_licensechain.monitoring.gunicorn import child_exit`` to
the gunicorn config so that a dead worker's gauges are dropped. ``exposition()`` then adds up
every worker's files, whichever worker answers the scrape. Without the variable each process
serves only its own counts.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client import multiprocess as _multiprocess

from ..core.denylist import Denylist

log = logging.getLogger("licensechain.metrics")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: request latency buckets, seconds: verify takes about a millisecond, admin writes more
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: the ``reason`` label of a valid verification
NO_REASON: Final = "none"

REQUESTS: Final = Counter(
    "licensechain_http_requests",
    "HTTP requests by route template, method and status.",
    ["endpoint", "method", "status"],
)
LATENCY: Final = Histogram(
    "licensechain_http_request_duration_seconds",
    "Time from the first to the last request hook of the app, seconds.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
VERIFICATIONS: Final = Counter(
    "licensechain_verifications",
    "Verify and validate-hardware answers by outcome (valid, invalid) and refusal reason.",
    ["outcome", "reason"],
)
TOKENS_ISSUED: Final = Counter("licensechain_tokens_issued", "License tokens signed.")
REVOCATIONS: Final = Counter(
    "licensechain_revocations",
    "Revocations recorded (token.revoke, license.revoke, license.suspend, device.release).",
    ["action"],
)
DENYLIST_SYNCED: Final = Gauge(
    "licensechain_denylist_synced",
    "1 when this worker's denylist copy follows its source (store or Redis), else 0; "
    "the minimum over live workers.",
    multiprocess_mode="livemin",
)
DENYLIST_ENTRIES: Final = Gauge(
    "licensechain_denylist_entries",
    "Revocations in force in the denylist copy; the maximum over live workers.",
    multiprocess_mode="livemax",
)
DENYLIST_SEQUENCE: Final = Gauge(
    "licensechain_denylist_store_sequence",
    "The store's revocation counter that the denylist copy matches (-1: never loaded); "
    "the minimum over live workers (the one lagging most).",
    multiprocess_mode="livemin",
)
AUTH_FAILURES: Final = Counter(
    "licensechain_auth_failures",
    "Admin API requests refused for their API key: 401 (missing, invalid, expired) and 403.",
    ["status"],
)
ANOMALIES: Final = Counter(
    "licensechain_security_anomalies",
    "Security signals that fired (one security.anomaly audit event each).",
    ["signal"],
)

VALID_OUTCOME: Final = "valid"
INVALID_OUTCOME: Final = "invalid"


def multiprocess_mode() -> bool:
    """Whether ``PROMETHEUS_MULTIPROC_DIR`` is set (the values live in shared files)."""
    return MULTIPROC_ENV in os.environ


# ``labels()`` checks and locks on every call: the children of the request path's label
# sets are kept here (bounded: route templates, methods, statuses and reasons are finite).
_verification_children: dict[str | None, Any] = {}
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def count_verification(reason: str | None) -> None:
    """One verify answer: ``reason`` None is valid (a token was issued), else the refusal."""
    child = _verification_children.get(reason)
    if child is None:
        child = VERIFICATIONS.labels(
            VALID_OUTCOME if reason is None else INVALID_OUTCOME, reason or NO_REASON
        )
        _verification_children[reason] = child
    child.inc()
    if reason is None:
        TOKENS_ISSUED.inc()


def count_request(route: str, method: str, status: int, seconds: float | None) -> None:
    """One answered request: ``route`` is the route template, ``seconds`` its latency (None
    when the clock was not started)."""
    key = (route, method, status)
    children = _request_children.get(key)
    if children is None:
        children = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route))
        _request_children[key] = children
    children[0].inc()
    if seconds is not None:
        children[1].observe(seconds)


def update_denylist_gauges(denylist: Denylist) -> None:
    """Set the denylist gauges from ``denylist`` (any backend; what it does not tell is
    left alone). Cheap: no I/O."""
    synced = getattr(denylist, "synced", None)
    seen = getattr(denylist, "seen", None)
    if isinstance(seen, int):
        DENYLIST_SEQUENCE.set(seen)
        if synced is None:  # a memory copy of the store follows it once loaded
            synced = seen >= 0
    if isinstance(synced, bool):
        DENYLIST_SYNCED.set(1 if synced else 0)
    try:
        DENYLIST_ENTRIES.set(len(denylist))  # type: ignore[arg-type]
    except TypeError:  # a backend that cannot count (Redis without a mirror)
        pass


def _registry() -> CollectorRegistry:
    if not multiprocess_mode():
        return REGISTRY
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition() -> bytes:
    """The metrics in Prometheus's text format (``CONTENT_TYPE``): every worker's, added
    up, in multiprocess mode; else this process's."""
    return generate_latest(_registry())


_server_lock = threading.Lock()
_servers: dict[int, int] = {}  # port -> pid that serves it


def serve_on_loopback(port: int) -> bool:
    """Serve ``exposition()`` on ``127.0.0.1:port`` from a daemon thread of this process.

    Once per process and port. Under gunicorn every worker tries; the first one to bind
    serves every worker's counts (multiprocess mode), the others find the port taken and
    return False (logged at INFO). Never binds another address than loopback.
    """
    pid = os.getpid()
    with _server_lock:
        if _servers.get(port) == pid:
            return True
        try:
            start_http_server(port, addr="127.0.0.1", registry=_registry())
        except OSError as error:
            log.info("metrics port 127.0.0.1:%d not served by pid %d: %s", port, pid, error)
            return False
        _servers[port] = pid
        return True
