"""Rate limits of the public endpoints, with flask-limiter: per client IP and per license key.

One ``Limiter`` per Flask app (so several apps in one process keep separate limits and
storage). Storage is chosen by URI as ``limits`` does; with ``ratelimit_fail_open`` a storage
outage falls back to per-process in-memory limits instead of failing the request.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

from ..client_ip import client_ip
from ..config import Settings
from .body import peek_json_body
from .http import error_response

F = TypeVar("F", bound=Callable[..., Any])

KEY_PREFIX = "licensechain"
LICENSE_KEY_SCOPE = "license-key"
LICENSE_KEY_FIELDS = ("key", "licenseKey", "license_key")
_REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")


def ratelimit_storage_uri(settings: Settings) -> str:
    return settings.ratelimit_storage_url or settings.redis_url or "memory://"


def create_limiter(app: Flask, settings: Settings) -> Limiter:
    uri = ratelimit_storage_uri(settings)
    options: dict[str, str | int] = {}
    if uri.split("://", 1)[0].lower() in _REDIS_SCHEMES:
        # A dead Redis must cost a request one second at most, not a hang.
        options = {"socket_timeout": 1, "socket_connect_timeout": 1}
    limiter = Limiter(
        client_ip,
        storage_uri=uri,
        storage_options=options,
        headers_enabled=True,
        strategy="fixed-window",
        swallow_errors=settings.ratelimit_fail_open,
        in_memory_fallback_enabled=settings.ratelimit_fail_open,
        retry_after="delta-seconds",
        key_prefix=KEY_PREFIX,
        enabled=settings.ratelimit_enabled,
    )
    limiter.init_app(app)
    return limiter


@dataclass(frozen=True)
class PublicLimits:
    """Decorators for the public views, bound to one app's limiter."""

    per_ip: Callable[[F], F]
    per_license_key: Callable[[F], F]
    render_breach: Callable[[RateLimitExceeded], Response]


def public_limits(limiter: Limiter, settings: Settings) -> PublicLimits:
    max_body = settings.max_body_bytes

    def license_key_bucket() -> str:
        # Hashed: license keys are credentials and must not appear as Redis key names.
        key = _license_key_in_body(max_body)
        return hashlib.sha256(key.encode()).hexdigest()[:32] if key else ""

    def no_license_key() -> bool:
        return _license_key_in_body(max_body) is None

    per_ip: Any = limiter.limit(settings.ratelimit_per_ip)
    # Shared across verify and validate-hardware: one budget per license key.
    per_key: Any = limiter.shared_limit(
        settings.ratelimit_per_key,
        scope=LICENSE_KEY_SCOPE,
        key_func=license_key_bucket,
        exempt_when=no_license_key,
    )

    def render_breach(exc: RateLimitExceeded) -> Response:
        current = limiter.current_limit
        retry_after = 1
        if current is not None:
            retry_after = max(1, int(current.reset_at - time.time()))
        return error_response(
            429, "rate_limited", "Too many requests.", {"Retry-After": str(retry_after)}
        )

    return PublicLimits(per_ip=per_ip, per_license_key=per_key, render_breach=render_breach)


def _license_key_in_body(max_body: int) -> str | None:
    body = peek_json_body(max_body)
    if body is None:
        return None
    for name in LICENSE_KEY_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and value:
            return value.strip().upper()
    return None
