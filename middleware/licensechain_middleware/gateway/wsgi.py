"""The WSGI gateway, for gunicorn.

    gunicorn -k gevent --keep-alive 10 -w 2 \\
        'licensechain_middleware.gateway.wsgi:create_app()'

with ``LICENSECHAIN_GATEWAY_CONFIG=/path/to/gateway.toml`` in the environment
(``licensechain-gateway`` does all of this for you).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..wsgi import LicenseGate
from .authz import AuthzApp
from .client import SyncTransportHolder
from .config import GatewayConfig, load_config
from .front_wsgi import WSGIFront
from .metrics import EngineCounters
from .observe import configure_access_log
from .ops import OpsEndpoints
from .proxy_wsgi import WSGIProxy

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def create_app(config_path: str | os.PathLike[str] | None = None) -> WSGIApplication:
    """The gateway app from ``config_path`` or ``$LICENSECHAIN_GATEWAY_CONFIG``."""
    return build_app(load_config(config_path))


def build_app(config: GatewayConfig) -> WSGIFront:
    settings = config.gateway
    configure_access_log(settings.access_log)
    app: LicenseGate | AuthzApp
    if settings.mode == "authz":
        app = AuthzApp(config.gate)  # the forward-auth endpoint: decisions, no upstream
    else:
        proxy = WSGIProxy(
            settings.upstream_base,
            SyncTransportHolder(settings.limits),
            forwarded=settings.forwarded_headers,
            bodies=settings.bodies,
        )
        app = LicenseGate(proxy, config.gate)
    return WSGIFront(
        app,
        OpsEndpoints(metrics_enabled=settings.metrics),
        app.readiness,
        EngineCounters(app.engine.verifier, app.engine.keys),
        access_log=settings.access_log,
        request_id_header=config.gate.request_id_header,
    )
