"""What ``ratelimit_fail_open`` means, for the extension's public limits and every gate.

When the rate-limit store cannot answer, a limiter with ``fail_open`` counts in this
process's memory for ``FALLBACK_SECONDS`` (logged once per switch), then tries the
store again; without it, the request gets 503 (``Unavailable``, with ``Retry-After``).
Requests are never let through uncounted. ``LimitExceeded`` is the 429 every limiter
raises, with ``Retry-After`` and ``X-RateLimit-Limit/-Remaining/-Reset`` (reset as unix
seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from limits import RateLimitItem
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter

from .errors import RateLimited, Unavailable

log = logging.getLogger("licensechain.ratelimit")

#: Seconds a failed store is skipped in favour of in-process counting.
FALLBACK_SECONDS: Final = 5.0


class LimitExceeded(RateLimited):
    """429 with ``Retry-After`` and the ``X-RateLimit-*`` headers of the limit that ran out."""

    def __init__(self, limit: RateLimitItem, reset_at: float, remaining: int) -> None:
        super().__init__(retry_after=int(reset_at - time.time()) + 1)
        self.limit = limit
        self.reset_at = int(reset_at)
        self.remaining = max(0, remaining)

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        headers["X-RateLimit-Limit"] = str(self.limit.amount)
        headers["X-RateLimit-Remaining"] = str(self.remaining)
        headers["X-RateLimit-Reset"] = str(self.reset_at)
        return headers


class StoreFallback:
    """The in-process counting a limiter falls back to when its store fails.

    :param fail_open: the ``ratelimit_fail_open`` option.
    :param strategy: the ``limits`` strategy class the limiter uses (moving window...).
    """

    def __init__(self, fail_open: bool, strategy: type[RateLimiter]) -> None:
        self.fail_open = fail_open
        self.strategy: RateLimiter | None = strategy(MemoryStorage()) if fail_open else None
        self._until = 0.0
        self._lock = threading.Lock()

    def active(self) -> RateLimiter | None:
        """The memory strategy while a recent store failure lasts, else None."""
        if self.strategy is not None and time.monotonic() < self._until:
            return self.strategy
        return None

    def engage(self, exc: Exception) -> RateLimiter:
        """The store failed: the memory strategy, or ``Unavailable`` when failing closed."""
        if self.strategy is None:
            raise Unavailable(detail=f"rate-limit store unreachable: {exc}") from exc
        with self._lock:
            if time.monotonic() >= self._until:
                log.warning(
                    "rate-limit store unreachable, counting in process for %.0f s: %s",
                    FALLBACK_SECONDS,
                    exc,
                )
            self._until = time.monotonic() + FALLBACK_SECONDS
        return self.strategy

    def reset(self) -> None:
        if self.strategy is not None:
            self.strategy.storage.reset()
