"""The reverse-proxy gateway: ``LicenseGate``/``LicenseGateASGI`` in front of an httpx
proxy to a legacy service, with health, readiness, metrics and a JSON access log.

Factories: ``licensechain_middleware.gateway.wsgi:create_app`` (gunicorn) and
``licensechain_middleware.gateway.asgi:create_app`` (uvicorn); command:
``licensechain-gateway``.
"""

from __future__ import annotations

from .config import GatewayConfig, load_config
from .settings import GatewayConfigError, GatewaySettings

__all__ = ["GatewayConfig", "GatewayConfigError", "GatewaySettings", "load_config"]
