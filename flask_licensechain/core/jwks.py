"""``RemoteJWKS``: the key source of integrator mode, a JWKS fetched from a URL.

Caching rules:
- a fetched set lives ``cache_ttl`` seconds (default 300), or the response's
  ``Cache-Control: max-age`` clamped to ``min_ttl``..``max_ttl`` (60 s..1 day);
- a ``kid`` that is not in the set triggers one refetch; concurrent refetches
  (and concurrent refreshes) are merged into one HTTP request (single flight);
- after such a refetch does not find the kid there is a cooldown (>= 30 s) in
  which no kid triggers another one, and the missing kid is remembered for
  ``unknown_kid_ttl`` in a set of at most ``max_unknown_kids``;
- when a refresh fails the last good set is served for ``stale_window`` more
  seconds (each failure is logged), with retries backed off up to 30 s;
- a key absent from a successfully fetched set is gone at once.

Fetching is deliberately narrow: GET with a timeout of at most 2 s, no redirects,
``https`` only (plain ``http`` for loopback hosts or with ``allow_http=True``), no
compressed bodies (``Accept-Encoding: identity``, so a small gzip cannot expand
into a large one), the body read as a stream and abandoned past ``max_bytes``.
With nothing fetched yet, a failure raises ``Unavailable`` (503), not a 401.

``current()`` is a cheap attribute read while the set is fresh. The HTTP client
and the locks are recreated in a forked child (gunicorn workers).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from .contract import MAX_KID_LENGTH
from .errors import LicenseChainError, Unavailable
from .keysource import PublicKeys, parse_jwks

log = logging.getLogger("licensechain.jwks")

DEFAULT_CACHE_TTL: Final = 300.0
DEFAULT_MIN_TTL: Final = 60.0
DEFAULT_MAX_TTL: Final = 86400.0
MAX_TIMEOUT: Final = 2.0
MIN_MISS_COOLDOWN: Final = 30.0
DEFAULT_UNKNOWN_KID_TTL: Final = 300.0
DEFAULT_MAX_UNKNOWN_KIDS: Final = 1024
DEFAULT_STALE_WINDOW: Final = 3600.0
DEFAULT_MAX_BYTES: Final = 64 * 1024
MAX_RETRY_BACKOFF: Final = 30.0
LOOPBACK_NAMES: Final = frozenset({"localhost"})

_MAX_AGE = re.compile(r'(?:^|,)\s*max-age\s*=\s*"?(\d{1,10})"?\s*(?:,|$)', re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


class JWKSFetchError(Exception):
    """One failed fetch (network, status, size, or document). Never leaves this module."""


@dataclass(frozen=True)
class _KeySet:
    keys: PublicKeys
    fresh_until: float  # a refresh is due after this
    stale_until: float  # served while refreshes fail, until this


def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_jwks_url(url: str, *, allow_http: bool = False) -> httpx.URL:
    """The parsed URL, or ``ValueError`` when its scheme is not allowed."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid JWKS URL: {exc}") from None
    if not parsed.host:
        raise ValueError("the JWKS URL has no host")
    if parsed.scheme == "https":
        return parsed
    if parsed.scheme == "http" and (allow_http or is_loopback_host(parsed.host)):
        return parsed
    raise ValueError(
        "the JWKS URL must be https:// (plain http only for loopback hosts or with allow_http)"
    )


def ttl_from_cache_control(value: str | None, default: float, low: float, high: float) -> float:
    """Lifetime from ``Cache-Control``: ``max-age`` clamped to [low, high]; no-cache -> low."""
    if value:
        if _NO_CACHE.search(value):
            return low
        match = _MAX_AGE.search(value)
        if match:
            return min(max(float(match.group(1)), low), high)
    return min(max(default, low), high)


class RemoteJWKS:
    """A ``KeySource`` that fetches and caches the issuer's JWKS (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        timeout: float = MAX_TIMEOUT,
        allow_http: bool = False,
        min_ttl: float = DEFAULT_MIN_TTL,
        max_ttl: float = DEFAULT_MAX_TTL,
        miss_cooldown: float = MIN_MISS_COOLDOWN,
        unknown_kid_ttl: float = DEFAULT_UNKNOWN_KID_TTL,
        max_unknown_kids: int = DEFAULT_MAX_UNKNOWN_KIDS,
        stale_window: float = DEFAULT_STALE_WINDOW,
        max_bytes: int = DEFAULT_MAX_BYTES,
        verify: Any = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = str(check_jwks_url(url, allow_http=allow_http))
        self.cache_ttl = float(cache_ttl)
        self.timeout = min(max(float(timeout), 0.1), MAX_TIMEOUT)
        self.min_ttl = float(min_ttl)
        self.max_ttl = max(float(max_ttl), self.min_ttl)
        self.miss_cooldown = max(float(miss_cooldown), MIN_MISS_COOLDOWN)
        self.unknown_kid_ttl = max(0.0, float(unknown_kid_ttl))
        self.max_unknown_kids = max(1, int(max_unknown_kids))
        self.stale_window = max(0.0, float(stale_window))
        self.max_bytes = max(1, int(max_bytes))
        self._verify_tls = verify
        self._clock = clock
        self._set: _KeySet | None = None
        #: fetch attempts so far; a waiter that sees it move knows a fetch happened
        self.fetch_count = 0
        self._retry_at = float("-inf")
        self._backoff = 0.0
        self._cooldown_until = float("-inf")
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._pid = -1
        self._client: httpx.Client | None = None
        self._fetch_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ensure_process()

    def __repr__(self) -> str:
        return f"RemoteJWKS({self.url!r})"

    # -- KeySource ----------------------------------------------------------

    def current(self) -> PublicKeys:
        keyset = self._set
        if keyset is not None and self._clock() < keyset.fresh_until:
            return keyset.keys
        return self._current_slow()

    def lookup_unknown(self, kid: str) -> rsa.RSAPublicKey | None:
        """One merged refetch for a kid not in ``current()``, unless cooling down."""
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            return None
        self._ensure_process()
        now = self._clock()
        with self._state_lock:
            until = self._unknown.get(kid)
            if until is not None:
                if until > now:
                    return None
                del self._unknown[kid]
        if now < self._cooldown_until or now < self._retry_at:
            return None
        seen = self.fetch_count
        fetched = self._fetch_once(seen, blocking=True)
        keyset = self._set
        key = keyset.keys.get(kid) if keyset is not None else None
        if key is None:
            now = self._clock()
            self._cooldown_until = max(self._cooldown_until, now + self.miss_cooldown)
            if fetched:  # only a fresh set proves the kid unknown
                self._remember_unknown(kid, now)
        return key

    # -- probes and control -------------------------------------------------

    def ready(self) -> bool:
        """True when a usable key set is held (fetching the first one if needed)."""
        try:
            self.current()
        except Unavailable:
            return False
        return True

    def refresh(self) -> bool:
        """Fetch now (merged with any fetch in flight); True when the set is fresh."""
        self._ensure_process()
        self._fetch_once(self.fetch_count, blocking=True)
        keyset = self._set
        return keyset is not None and self._clock() < keyset.fresh_until

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- internals ----------------------------------------------------------

    def _current_slow(self) -> PublicKeys:
        self._ensure_process()
        keyset = self._set
        now = self._clock()
        if keyset is None:
            if now >= self._retry_at:
                self._fetch_once(self.fetch_count, blocking=True)
            keyset = self._set
            if keyset is None:
                raise Unavailable(detail=f"no JWKS fetched yet from {self.url}")
            return keyset.keys
        if now >= keyset.fresh_until and now >= self._retry_at:
            # One thread refreshes; the others keep serving the set they have.
            self._fetch_once(self.fetch_count, blocking=False)
            keyset = self._set
            assert keyset is not None
        if self._clock() < keyset.stale_until:
            return keyset.keys
        raise Unavailable(detail=f"JWKS from {self.url} is stale beyond the stale window")

    def _fetch_once(self, seen: int, *, blocking: bool) -> bool:
        """Fetch unless another thread fetched since ``seen``; True when this call's
        fetch, or the merged one, produced a fresh set."""
        lock = self._fetch_lock
        if not lock.acquire(blocking=blocking, timeout=self.timeout * 3 if blocking else -1):
            return False
        try:
            if self.fetch_count != seen:  # merged: someone fetched while we waited
                keyset = self._set
                return keyset is not None and self._clock() < keyset.fresh_until
            try:
                keys, ttl = self._fetch()
            except JWKSFetchError as exc:
                self._on_failure(exc)
                return False
            finally:
                self.fetch_count += 1
            self._on_success(keys, ttl)
            return True
        finally:
            lock.release()

    def _on_success(self, keys: PublicKeys, ttl: float) -> None:
        previous = self._set.keys if self._set is not None else {}
        # Keep the old object for an unchanged key so verified-token cache hits stay cheap.
        merged = {
            kid: previous[kid] if kid in previous and previous[kid] == key else key
            for kid, key in keys.items()
        }
        now = self._clock()
        if self._backoff:
            log.warning("JWKS %s is reachable again (%d keys)", self.url, len(merged))
        self._set = _KeySet(
            keys=MappingProxyType(merged),
            fresh_until=now + ttl,
            stale_until=now + ttl + self.stale_window,
        )
        self._backoff = 0.0
        self._retry_at = float("-inf")
        with self._state_lock:
            for kid in merged:
                self._unknown.pop(kid, None)

    def _on_failure(self, exc: JWKSFetchError) -> None:
        now = self._clock()
        self._backoff = min(max(self._backoff * 2, 1.0), MAX_RETRY_BACKOFF)
        self._retry_at = now + self._backoff
        keyset = self._set
        if keyset is None:
            log.warning("JWKS fetch from %s failed, no key set yet: %s", self.url, exc)
        else:
            log.warning(
                "JWKS fetch from %s failed, serving the last good set for %.0f s more: %s",
                self.url,
                max(0.0, keyset.stale_until - now),
                exc,
            )

    def _remember_unknown(self, kid: str, now: float) -> None:
        with self._state_lock:
            self._unknown[kid] = now + self.unknown_kid_ttl
            self._unknown.move_to_end(kid)
            while len(self._unknown) > self.max_unknown_kids:
                self._unknown.popitem(last=False)

    def _fetch(self) -> tuple[PublicKeys, float]:
        client = self._http()
        deadline = time.monotonic() + self.timeout
        body = bytearray()
        try:
            with client.stream(
                "GET",
                self.url,
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                follow_redirects=False,
                timeout=self.timeout,
            ) as response:
                if response.is_redirect:
                    raise JWKSFetchError(f"HTTP {response.status_code}: redirects are not followed")
                if response.status_code != 200:
                    raise JWKSFetchError(f"HTTP {response.status_code}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise JWKSFetchError(f"compressed response ({encoding!r}) refused")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise JWKSFetchError(f"response of {declared} bytes > {self.max_bytes}")
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise JWKSFetchError(f"response larger than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise JWKSFetchError(f"response slower than {self.timeout} s")
                cache_control = response.headers.get("cache-control")
        except httpx.HTTPError as exc:
            raise JWKSFetchError(f"{type(exc).__name__}: {exc}") from None
        try:
            keys = parse_jwks(json.loads(bytes(body)))
        except (ValueError, RecursionError) as exc:
            raise JWKSFetchError(f"response is not JSON: {type(exc).__name__}") from None
        except LicenseChainError as exc:
            raise JWKSFetchError(exc.detail or exc.description) from None
        ttl = ttl_from_cache_control(cache_control, self.cache_ttl, self.min_ttl, self.max_ttl)
        return keys, ttl

    def _http(self) -> httpx.Client:
        client = self._client
        if client is None:
            client = httpx.Client(
                timeout=self.timeout,
                follow_redirects=False,
                verify=self._verify_tls,
                limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
            )
            self._client = client
        return client

    def _ensure_process(self) -> None:
        """A forked child must not share the parent's sockets or inherit held locks."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._client = None  # the parent's pool is the parent's; drop it unclosed
            self._fetch_lock = threading.Lock()
            self._state_lock = threading.Lock()
