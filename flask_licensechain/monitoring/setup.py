"""``install_monitoring(app, state)``: the monitoring of an issuer app, from its settings.

Called once by ``init_app``, after the issuer state is built. It adds, each by its settings:

- the security headers (``headers.py``): one ``after_request`` hook on the app;
- the request hooks: ``before_request`` starts the clock, ``after_request`` counts the
  request, its latency and admin API authentication failures (401/403 answers of non-public
  endpoints, counted here rather than in ``api/auth.py``), refreshes the denylist gauges at
  most once a second, and writes the access line;
- the metrics endpoint at ``LICENSECHAIN_METRICS_PATH``, guarded by
  ``api.auth.requires("metrics:read")``, and/or the loopback port
  ``LICENSECHAIN_METRICS_PORT``;
- the signal monitor (``signals.py``) and the store listener counting revocations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from ..api.auth import current_api_key, requires
from ..api.blueprint import BLUEPRINT_NAME, PUBLIC_ENDPOINTS
from ..api.http import (
    finish_response,
    render_http_exception,
    render_licensechain_error,
    render_unexpected,
    request_id,
)
from ..config import Settings
from ..core.errors import LicenseChainError, Unauthorized
from ..state import IssuerState
from ..store import Store
from ..store.changes import SYSTEM
from . import access_log, metrics
from .headers import security_headers_hook
from .signals import (
    SIGNALS,
    Anomaly,
    Monitoring,
    SignalMonitor,
    Threshold,
    count_revocation,
)
from .windows import MemoryWindows, RedisWindows, WindowStore

METRICS_SCOPE: Final = "metrics:read"
MONITORING_BLUEPRINT: Final = "licensechain_monitoring"
#: where ``before_request`` leaves the request's start (``time.perf_counter()``)
STARTED_ENVIRON_KEY: Final = "licensechain.started"
UNMATCHED_ROUTE: Final = "<unmatched>"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_AUTH_FAILURE_STATUSES: Final = frozenset({401, 403})
_GAUGE_PERIOD: Final = 1.0


def install_monitoring(app: Flask, state: IssuerState) -> None:
    """Set up what ``state.settings`` asks for on ``app`` (module docstring) and set
    ``state.monitoring``. Raises nothing of its own (``init_app`` checked the settings);
    a metrics port already taken is logged, not raised."""
    settings = state.settings
    if settings.security_headers:
        app.after_request(security_headers_hook(settings))
    collect = bool(
        settings.metrics_enabled
        or settings.metrics_path is not None
        or settings.metrics_port is not None
    )
    signals = build_signal_monitor(settings, state.store) if settings.signals_enabled else None
    state.monitoring = Monitoring(metrics=collect, signals=signals)
    if collect:
        state.store.changes.add_committed_listener(count_revocation)
    if collect or settings.access_log:
        app.before_request(_start_clock)
        app.after_request(_request_hook(state, metrics_on=collect, log_on=settings.access_log))
    if settings.access_log:
        access_log.enable()
    if settings.metrics_path is not None:
        app.register_blueprint(_metrics_blueprint(state, settings.metrics_path))
    if settings.metrics_port is not None:
        metrics.serve_on_loopback(settings.metrics_port)


# -- signals ---------------------------------------------------------------------------


def signals_storage_uri(settings: Settings) -> str:
    """``signals_storage_url``, else ``redis_url`` when it is redis:// or rediss://, else
    ``memory://``."""
    if settings.signals_storage_url:
        return settings.signals_storage_url
    redis_url = settings.redis_url or ""
    if redis_url.split("://", 1)[0].lower() in ("redis", "rediss"):
        return redis_url
    return "memory://"


def build_signal_monitor(settings: Settings, store: Store) -> SignalMonitor:
    """The monitor of the settings' thresholds, counting at ``signals_storage_uri``, firing
    ``security.anomaly`` changes into ``store``."""
    uri = signals_storage_uri(settings)
    windows: WindowStore = (
        MemoryWindows() if uri.startswith("memory://") else RedisWindows.from_uri(uri)
    )
    thresholds = {
        signal: Threshold.parse(getattr(settings, f"signal_{signal}")) for signal in SIGNALS
    }
    return SignalMonitor(thresholds, windows, _anomaly_recorder(store))


def _anomaly_recorder(store: Store) -> Callable[[Anomaly], None]:
    def record(anomaly: Anomaly) -> None:
        with store.unit_of_work(SYSTEM) as unit:
            unit.record(anomaly.change())
            unit.after_commit(metrics.ANOMALIES.labels(anomaly.signal).inc)

    return record


# -- request hooks ---------------------------------------------------------------------


def _start_clock() -> None:
    request.environ[STARTED_ENVIRON_KEY] = time.perf_counter()


def _actor_id() -> str | None:
    try:
        return current_api_key().id
    except Unauthorized:  # no key was authenticated for this request
        return None


def _request_hook(
    state: IssuerState, *, metrics_on: bool, log_on: bool
) -> Callable[[Response], Response]:
    denylist = state.denylist
    next_gauges = [0.0]

    def observe_request(response: Response) -> Response:
        now = time.perf_counter()
        started = request.environ.get(STARTED_ENVIRON_KEY)
        elapsed = now - started if isinstance(started, float) else None
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED_ROUTE
        status = response.status_code
        if metrics_on:
            method = request.method if request.method in _METHODS else "other"
            metrics.count_request(route, method, status, elapsed)
            if status in _AUTH_FAILURE_STATUSES and _is_admin_request():
                metrics.AUTH_FAILURES.labels(str(status)).inc()
            if now >= next_gauges[0]:
                next_gauges[0] = now + _GAUGE_PERIOD
                metrics.update_denylist_gauges(denylist)
        if log_on:
            access_log.log_request(
                request_id=request_id(),
                route=route,
                method=request.method[:16],
                status=status,
                latency_ms=None if elapsed is None else round(elapsed * 1000, 3),
                actor_id=_actor_id(),
            )
        return response

    return observe_request


def _is_admin_request() -> bool:
    """An endpoint of the API (or the metrics endpoint) that takes an API key."""
    return (
        request.blueprint in (BLUEPRINT_NAME, MONITORING_BLUEPRINT)
        and request.endpoint not in PUBLIC_ENDPOINTS
    )


# -- the metrics endpoint --------------------------------------------------------------


def _metrics_blueprint(state: IssuerState, path: str) -> Blueprint:
    """``GET <path>``: the Prometheus text, to an API key with ``metrics:read``; the API's
    JSON errors (401 with the Bearer challenge, 403 ``insufficient_scope``)."""
    blueprint = Blueprint(MONITORING_BLUEPRINT, __name__)
    blueprint.register_error_handler(LicenseChainError, render_licensechain_error)
    blueprint.register_error_handler(HTTPException, render_http_exception)
    blueprint.register_error_handler(Exception, render_unexpected)
    blueprint.after_request(finish_response)
    denylist = state.denylist

    @requires(METRICS_SCOPE)
    def serve_metrics() -> Response:
        metrics.update_denylist_gauges(denylist)
        return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)

    blueprint.add_url_rule(path, "metrics", serve_metrics, methods=["GET"])
    return blueprint
