"""Rate limits of the public endpoints: per client IP and per license key, with ``limits``.

``limits`` (the library under flask-limiter) does the counting, on a storage chosen by URI
(``memory://``, ``redis://``...). We call its strategy directly instead of going through
flask-limiter's decorators and app-wide hooks: on verify with the default three windows per
IP and per key, flask-limiter's per-request bookkeeping (limit re-parsing, exemption scopes,
context objects, header lookups: about a thousand more Python calls per request) cost close
to three times what these direct calls cost, and more than the rest of the endpoint bar the
RSA signature.

``LICENSECHAIN_RATELIMIT_BACKEND = "flask-limiter"`` counts through the host app's own
Flask-Limiter ``Limiter`` instead (``HostLimiter``): the same per-IP and per-key limits,
declared as Flask-Limiter limits, in its storage, with its headers, exemptions
(``request_filter``, ``enabled``) and failure options (``swallow_errors``,
``in_memory_fallback``). A refusal still answers the contract's 429 (``rate_limited`` with
``Retry-After``); a storage error that the host lets through answers 503. The direct path
stays the default because it is faster (``benchmarks/verify_endpoint``).

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
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from flask import Flask, request
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, RateLimiter

from ..client_ip import client_ip
from ..config import Settings
from ..core.errors import ConfigError, LicenseChainError, RateLimited, Unavailable
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


#: endpoint name -> whether it is also limited per license key (filled by ``rate_limited``)
LIMITED_ENDPOINTS: dict[str, bool] = {}


class PublicRateLimits:
    """Counts public requests per client IP and per license key for one app.

    ``host`` is set when the counting goes through the host app's Flask-Limiter
    (``LICENSECHAIN_RATELIMIT_BACKEND = "flask-limiter"``); ``storage`` is then None.
    """

    def __init__(self, settings: Settings, host: HostLimiter | None = None) -> None:
        self.host = host
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
        use_storage = self.enabled and host is None
        storage = storage_from_string(self.storage_uri, **options) if use_storage else None
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
        if self.host is not None:
            return self.host.check_storage()
        return self.storage is None or bool(self.storage.check())


class HostLimiter:
    """The public limits declared on the host app's Flask-Limiter ``Limiter``.

    Each limited endpoint gets a check function decorated, once, with the per-IP limits
    (``limiter.limit``, keyed by ``client_ip``, scoped by endpoint) and, for verify and
    validate-hardware, the per-key limits (``limiter.shared_limit``, one budget per license
    across both endpoints, exempt when the body names no key). ``override_defaults=False``:
    the host's default limits apply to these endpoints too, as to its own routes.
    """

    def __init__(self, limiter: Any, settings: Settings) -> None:
        from flask_limiter import RateLimitExceeded  # the optional dependency

        self._exceeded: type[Exception] = RateLimitExceeded
        self.limiter = limiter
        self.max_body = settings.max_body_bytes
        per_ip = limiter.limit(
            settings.ratelimit_per_ip,
            key_func=client_ip,
            scope="licensechain-ip",
            override_defaults=False,
        )
        per_key = limiter.shared_limit(
            settings.ratelimit_per_key,
            scope="licensechain-key",
            key_func=self._key_bucket,
            exempt_when=self._no_key,
            override_defaults=False,
        )
        self._checks: dict[str, Callable[[], None]] = {}
        for endpoint, keyed in LIMITED_ENDPOINTS.items():
            check = per_ip(_named_check(endpoint))
            self._checks[endpoint] = per_key(check) if keyed else check

    def __repr__(self) -> str:
        return f"HostLimiter({self.limiter!r})"

    def _key_bucket(self) -> str:
        return license_key_bucket(self.max_body) or ""

    def _no_key(self) -> bool:
        return license_key_bucket(self.max_body) is None

    def check(self, endpoint: str) -> None:
        """Count one request of ``endpoint``. Raises ``RateLimited`` (429, ``Retry-After``)
        when a limit is used up, ``Unavailable`` (503) when the storage fails and the host
        does not swallow it; the host's ``after_request`` adds its own headers."""
        try:
            self._checks[endpoint]()
        except self._exceeded as exc:
            if getattr(exc, "response", None) is not None:  # the host's on_breach answer
                raise
            current = self.limiter.current_limit
            retry_after = 1 if current is None else int(current.reset_at - time.time())
            raise RateLimited(retry_after=retry_after) from None
        except LicenseChainError:
            raise
        except Exception as exc:
            raise Unavailable(detail=f"Flask-Limiter storage failed: {exc}") from exc

    def check_storage(self) -> bool:
        return bool(self.limiter.storage.check())


def _named_check(endpoint: str) -> Callable[[], None]:
    """A do-nothing function Flask-Limiter knows by a name of its own for ``endpoint``."""

    def check() -> None:
        return None

    check.__name__ = check.__qualname__ = f"licensechain_public_{endpoint.replace('-', '_')}"
    return check


def host_flask_limiter(app: Flask) -> Any:
    """The Flask-Limiter ``Limiter`` initialised on ``app``.

    :raises ConfigError: Flask-Limiter is not installed, or no (or more than one)
        ``Limiter`` is initialised on the app.
    """
    setting = "LICENSECHAIN_RATELIMIT_BACKEND = 'flask-limiter'"
    try:
        import flask_limiter  # noqa: F401  the optional dependency
    except ImportError:
        raise ConfigError(
            f"{setting} needs Flask-Limiter: pip install 'flask-licensechain[limiter]'"
        ) from None
    limiters = list(app.extensions.get("limiter", ()))
    if len(limiters) != 1:
        found = "no" if not limiters else f"{len(limiters)}"
        raise ConfigError(
            f"{setting} shares the app's Flask-Limiter Limiter, and {found} Limiter is "
            "initialised on this app: call Limiter(..., app=app) or limiter.init_app(app) "
            "once, before LicenseChain(app)"
        )
    return limiters[0]


def build_public_rate_limits(app: Flask, settings: Settings) -> PublicRateLimits:
    """The app's public limits, on the backend ``LICENSECHAIN_RATELIMIT_BACKEND`` names."""
    host = None
    if settings.ratelimit_enabled and settings.ratelimit_backend == "flask-limiter":
        host = HostLimiter(host_flask_limiter(app), settings)
    return PublicRateLimits(settings, host)


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

    LIMITED_ENDPOINTS[endpoint] = per_license_key

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            limiter = get_issuer_state().limiter
            if limiter.host is not None:
                limiter.host.check(endpoint)
            elif limiter.enabled:
                bucket = license_key_bucket(limiter.max_body) if per_license_key else None
                headers = limiter.hit(endpoint, client_ip(), bucket)
                request.environ[RATELIMIT_HEADERS_ENVIRON_KEY] = headers
            return view(*args, **kwargs)

        return cast(F, limited)

    return decorate
