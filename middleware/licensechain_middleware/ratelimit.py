"""Rate limits through the ``limits`` library, keyed by license ``sub`` or client IP.

One ``limits`` storage (``memory://`` or ``redis://``, shared across processes
and hosts) and one strategy serve every rule. The counter key is
``<prefix>/<rule>/<who>`` where ``who`` is ``sub:<license id>`` for a valid token
and ``ip:<client address>`` otherwise, so a license keeps one budget wherever it
comes from. A store that cannot answer is handled as ``ratelimit_fail_open`` says,
with the one meaning of ``flask_licensechain/core/ratelimit.py``: in-process counting
for a few seconds (logged), or 503 when it is off.

The ASGI gate uses the ``limits.aio`` twin of the same storage so that a Redis
round trip does not block the event loop.
"""

from __future__ import annotations

import logging
from typing import Any

from limits import RateLimitItem, parse_many, strategies
from limits.aio import strategies as aio_strategies
from limits.aio.storage import Storage as AsyncStorage
from limits.storage import Storage, storage_from_string

from flask_licensechain.core.ratelimit import LimitExceeded, StoreFallback

from .config import GateConfig

log = logging.getLogger("licensechain.gate.ratelimit")

_SYNC_STRATEGIES: dict[str, type[strategies.RateLimiter]] = {
    "moving-window": strategies.MovingWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
}
_ASYNC_STRATEGIES: dict[str, type[aio_strategies.RateLimiter]] = {
    "moving-window": aio_strategies.MovingWindowRateLimiter,
    "sliding-window-counter": aio_strategies.SlidingWindowCounterRateLimiter,
    "fixed-window": aio_strategies.FixedWindowRateLimiter,
}
_STORAGE_OPTIONS: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


class RateLimiter:
    """Checks the limits of a rule for one client; sync and async flavours share it."""

    def __init__(self, config: GateConfig, *, asynchronous: bool = False) -> None:
        self._fallback = StoreFallback(
            config.ratelimit_fail_open, _SYNC_STRATEGIES[config.ratelimit_strategy]
        )
        self.prefix = config.ratelimit_key_prefix
        self._parsed: dict[str, tuple[RateLimitItem, ...]] = {}
        uri = config.ratelimit_storage_url
        self.asynchronous = asynchronous and not uri.startswith("memory://")
        self._sync: strategies.RateLimiter | None = None
        self._async: aio_strategies.RateLimiter | None = None
        if self.asynchronous:
            self.async_storage: AsyncStorage = _async_storage(uri)
            self._async = _ASYNC_STRATEGIES[config.ratelimit_strategy](self.async_storage)
        else:
            storage = storage_from_string(uri, **_options(uri))
            assert isinstance(storage, Storage)
            self.storage: Storage = storage
            self._sync = _SYNC_STRATEGIES[config.ratelimit_strategy](self.storage)

    def limits_of(self, spec: str) -> tuple[RateLimitItem, ...]:
        parsed = self._parsed.get(spec)
        if parsed is None:
            parsed = self._parsed[spec] = tuple(parse_many(spec))
        return parsed

    def check(self, spec: str, rule_name: str, who: str) -> None:
        """Count one hit; raise ``LimitExceeded`` (429) or, failing closed, ``Unavailable``."""
        limiter = self._fallback.active() or self._sync
        assert limiter is not None, "use check_async with an asynchronous limiter"
        try:
            self._count(limiter, spec, rule_name, who)
        except LimitExceeded:
            raise
        except Exception as exc:
            if limiter is self._fallback.strategy:
                raise
            self._count(self._fallback.engage(exc), spec, rule_name, who)

    def _count(self, limiter: strategies.RateLimiter, spec: str, rule_name: str, who: str) -> None:
        for item in self.limits_of(spec):
            if not limiter.hit(item, self.prefix, rule_name, who):
                stats = limiter.get_window_stats(item, self.prefix, rule_name, who)
                raise LimitExceeded(item, stats.reset_time, stats.remaining)

    async def check_async(self, spec: str, rule_name: str, who: str) -> None:
        if self._async is None or self._fallback.active() is not None:
            self.check(spec, rule_name, who)
            return
        try:
            for item in self.limits_of(spec):
                if not await self._async.hit(item, self.prefix, rule_name, who):
                    stats = await self._async.get_window_stats(item, self.prefix, rule_name, who)
                    raise LimitExceeded(item, stats.reset_time, stats.remaining)
        except LimitExceeded:
            raise
        except Exception as exc:
            self._count(self._fallback.engage(exc), spec, rule_name, who)

    def ping(self) -> bool:
        if self._sync is not None:
            return bool(self.storage.check())
        return True

    async def ping_async(self) -> bool:
        if self._async is not None:
            return bool(await self.async_storage.check())
        return self.ping()


def _options(uri: str) -> dict[str, Any]:
    return {} if uri.startswith("memory://") else dict(_STORAGE_OPTIONS)


def _async_storage(uri: str) -> AsyncStorage:
    from limits.storage import storage_from_string as from_string

    storage = from_string("async+" + uri, implementation="redispy", **_STORAGE_OPTIONS)
    assert isinstance(storage, AsyncStorage)
    return storage
