"""The ASGI gateway, for uvicorn (HTTP and WebSockets).

    uvicorn --factory licensechain_middleware.gateway.asgi:create_app

with ``LICENSECHAIN_GATEWAY_CONFIG=/path/to/gateway.toml`` in the environment
(``licensechain-gateway --server uvicorn`` does all of this for you).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from ..asgi import LicenseGateASGI
from .authz_asgi import AuthzASGI
from .client import AsyncTransportHolder
from .config import GatewayConfig, load_config
from .front_asgi import ASGIApp, ASGIFront
from .metrics import EngineCounters
from .observe import configure_access_log
from .ops import OpsEndpoints
from .proxy_asgi import ASGIProxy


def create_app(config_path: str | os.PathLike[str] | None = None) -> ASGIApp:
    """The gateway app from ``config_path`` or ``$LICENSECHAIN_GATEWAY_CONFIG``."""
    return build_app(load_config(config_path))


def build_app(config: GatewayConfig) -> ASGIFront:
    settings = config.gateway
    configure_access_log(settings.access_log)
    app: LicenseGateASGI | AuthzASGI
    if settings.mode == "authz":
        app = AuthzASGI(config.gate)  # the forward-auth endpoint: decisions, no upstream
    else:
        proxy = ASGIProxy(
            settings.upstream_base,
            AsyncTransportHolder(settings.limits),
            forwarded=settings.forwarded_headers,
            bodies=settings.bodies,
        )
        app = LicenseGateASGI(proxy, config.gate)
    engine = app.engine

    async def readiness() -> Mapping[str, bool]:
        # The synchronous checks (denylist ping, JWKS) block: run them off the loop;
        # the asynchronous rate-limit storage is pinged on the loop it belongs to.
        checks = await asyncio.to_thread(engine.readiness)
        limiter = engine.limiter
        if limiter is not None and limiter.asynchronous:
            try:
                checks["ratelimit"] = await limiter.ping_async()
            except Exception:
                checks["ratelimit"] = False
        return checks

    return ASGIFront(
        app,
        OpsEndpoints(metrics_enabled=settings.metrics),
        readiness,
        EngineCounters(engine.verifier, engine.keys),
        access_log=settings.access_log,
        request_id_header=config.gate.request_id_header,
    )
