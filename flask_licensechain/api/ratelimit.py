"""Rate limits of the public endpoints: per client IP and per license key, with ``limits``.

``limits`` (the library under flask-limiter) does the counting, on a storage chosen by URI
(``memory://``, ``redis://``...). We call its strategy directly instead of going through
flask-limiter's decorators and app-wide hooks: on verify with the default three windows per
IP and per key, flask-limiter's per-request bookkeeping (limit re-parsing, exemption scopes,
context objects, header lookups: about a thousand more Python calls per request) cost close
to three times what these direct calls cost, and more than the rest of the endpoint bar the
RSA signature.

One ``PublicRateLimits`` per Flask app, so several apps in one process keep separate limits.
Counters are keyed ``licensechain/ip/<endpoint>/<address>`` and
``licensechain/key/<sha256 of the license key>`` (license keys are credentials: never a Redis
key name). When the storage fails, ``ratelimit_fail_open`` means what it means for every gate
(``core/ratelimit.py``): in-process counters for a few seconds (logged); otherwise 503.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from flask import request
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, RateLimiter

from ..client_ip import client_ip
from ..config import Settings
from ..core.ratelimit import LimitExceeded, StoreFallback
from ..state import get_issuer_state
from .body import peek_json_body
from .http import RATELIMIT_HEADERS_ENVIRON_KEY
from .names import KEY_FIELDS

log = logging.getLogger("licensechain.ratelimit")

F = TypeVar("F", bound=Callable[..., Any])

KEY_PREFIX: Final = "licensechain"
_REDIS_SCHEMES: Final = ("redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")

RateLimitHeaders = dict[str, str]


def ratelimit_storage_uri(settings: Settings) -> str:
    """``LICENSECHAIN_RATELIMIT_STORAGE_URL``, else ``LICENSECHAIN_REDIS_URL``, else
    ``memory://``."""
    return settings.ratelimit_storage_url or settings.redis_url or "memory://"


def _headers(item: RateLimitItem, remaining: int, reset_at: float) -> RateLimitHeaders:
    return {
        "X-RateLimit-Limit": str(item.amount),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(int(reset_at)),
    }


class PublicRateLimits:
    """Counts public requests per client IP and per license key for one app."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.ratelimit_enabled
        self.fail_open = settings.ratelimit_fail_open
        self.storage_uri = ratelimit_storage_uri(settings)
        self.per_ip: tuple[RateLimitItem, ...] = tuple(parse_many(settings.ratelimit_per_ip))
        self.per_key: tuple[RateLimitItem, ...] = tuple(parse_many(settings.ratelimit_per_key))
        self.max_body = settings.max_body_bytes
        options: dict[str, Any] = {"wrap_exceptions": True}
        if self.storage_uri.split("://", 1)[0].lower() in _REDIS_SCHEMES:
            # A dead Redis must cost a request one second at most, not a hang.
            options.update(socket_timeout=1, socket_connect_timeout=1)
        storage = storage_from_string(self.storage_uri, **options) if self.enabled else None
        self.storage: Storage | None = cast("Storage | None", storage)
        self._strategy = FixedWindowRateLimiter(self.storage) if self.storage else None
        self._fallback = StoreFallback(self.fail_open, FixedWindowRateLimiter)
        #: failed API-key authentications per client IP (``None`` when limits are off)
        self.auth_failures = (
            AuthFailureLimit(self.storage, settings.api_key_failure_limit, self.fail_open)
            if self.storage is not None
            else None
        )

    def __repr__(self) -> str:  # the storage URI may carry a password
        return f"PublicRateLimits(enabled={self.enabled}, fail_open={self.fail_open})"

    # -- counting --------------------------------------------------------------------------

    def hit(self, endpoint: str, client: str, license_bucket: str | None) -> RateLimitHeaders:
        """Count one request. Raises ``LimitExceeded`` (429) when a window is used up,
        or ``Unavailable`` (503) when the storage fails and we fail closed."""
        strategy = self._fallback.active() or self._strategy
        assert strategy is not None
        try:
            return self._count(strategy, endpoint, client, license_bucket)
        except LimitExceeded:
            raise
        except Exception as exc:
            if strategy is self._fallback.strategy:
                raise
            fallback = self._fallback.engage(exc)
            return self._count(fallback, endpoint, client, license_bucket)

    def _count(
        self,
        strategy: RateLimiter,
        endpoint: str,
        client: str,
        license_bucket: str | None,
    ) -> RateLimitHeaders:
        ip_ids = (KEY_PREFIX, "ip", endpoint, client)
        for item in self.per_ip:
            if not strategy.hit(item, *ip_ids):
                raise LimitExceeded(item, strategy.get_window_stats(item, *ip_ids).reset_time, 0)
        if license_bucket:
            key_ids = (KEY_PREFIX, "key", license_bucket)
            for item in self.per_key:
                if not strategy.hit(item, *key_ids):
                    stats = strategy.get_window_stats(item, *key_ids)
                    raise LimitExceeded(item, stats.reset_time, 0)
        # The headers describe the client's first per-IP window (the tightest, as configured).
        first = self.per_ip[0]
        stats = strategy.get_window_stats(first, *ip_ids)
        return _headers(first, stats.remaining, stats.reset_time)

    # -- operations ------------------------------------------------------------------------

    def check_storage(self) -> bool:
        """Whether the storage answers (for health); ``True`` when limits are off."""
        return self.storage is None or bool(self.storage.check())


class AuthFailureLimit:
    """Failed API-key authentications per client IP (``LICENSECHAIN_API_KEY_FAILURE_LIMIT``).

    Counters are ``licensechain/authfail/<ip>`` in the rate-limit storage, so every worker
    (and host, with Redis) shares them. ``check`` raises ``LimitExceeded`` (429) while any
    window is used up; ``fail`` counts one failure and answers ``True`` for exactly one
    failure per window (the one that uses the window up: the storage's atomic increment
    gives each caller its own count), so the trip is logged and recorded once.
    """

    def __init__(self, storage: Storage, limit: str, fail_open: bool) -> None:
        self.limit = limit
        self.items: tuple[RateLimitItem, ...] = tuple(parse_many(limit))
        self._strategy: RateLimiter = FixedWindowRateLimiter(storage)
        self._fallback = StoreFallback(fail_open, FixedWindowRateLimiter)

    def describe(self) -> str:
        """The configured limit, e.g. ``20/minute``."""
        return self.limit

    def _run(self, action: Callable[[RateLimiter], Any]) -> Any:
        strategy = self._fallback.active() or self._strategy
        try:
            return action(strategy)
        except LimitExceeded:
            raise
        except Exception as exc:
            if strategy is self._fallback.strategy:
                raise
            return action(self._fallback.engage(exc))

    def check(self, ip: str) -> None:
        """Raise ``LimitExceeded`` while ``ip`` is over its failure limit (``Unavailable``
        when the storage fails and rate limiting fails closed)."""

        def test(strategy: RateLimiter) -> None:
            for item in self.items:
                if not strategy.test(item, KEY_PREFIX, "authfail", ip):
                    stats = strategy.get_window_stats(item, KEY_PREFIX, "authfail", ip)
                    raise LimitExceeded(item, stats.reset_time, 0)

        self._run(test)

    def fail(self, ip: str) -> bool:
        """Count one failure of ``ip``; ``True`` when it used a window up."""

        def count(strategy: RateLimiter) -> bool:
            tripped = False
            for item in self.items:
                key = item.key_for(KEY_PREFIX, "authfail", ip)
                if strategy.storage.incr(key, item.get_expiry()) == item.amount:
                    tripped = True
            return tripped

        return bool(self._run(count))


def license_key_bucket(max_body: int) -> str | None:
    """The per-key counter id of the request's license key, if its body names one."""
    body = peek_json_body(max_body)
    if body is None:
        return None
    for name in KEY_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            # Same normalisation as the store's key lookup: one budget per license.
            return hashlib.sha256(value.strip().upper().encode()).hexdigest()[:32]
    return None


def rate_limited(endpoint: str, *, per_license_key: bool = False) -> Callable[[F], F]:
    """Limit a view per client IP, and per license key in the JSON body when asked.

    The limits are the current app's (``LICENSECHAIN_RATELIMIT_*``); ``endpoint`` names the
    per-IP counter. A refused request raises ``LimitExceeded`` (429) or ``Unavailable``
    (503) before the view runs; an allowed one leaves its ``X-RateLimit-*`` headers for the
    response.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            limiter = get_issuer_state().limiter
            if limiter.enabled:
                bucket = license_key_bucket(limiter.max_body) if per_license_key else None
                headers = limiter.hit(endpoint, client_ip(), bucket)
                request.environ[RATELIMIT_HEADERS_ENVIRON_KEY] = headers
            return view(*args, **kwargs)

        return cast(F, limited)

    return decorate
