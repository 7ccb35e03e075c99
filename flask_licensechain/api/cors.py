"""CORS for the public endpoints: only the origins some app lists in ``allowed_origins``.

Browser clients (a web shop's checkout page verifying a key) need CORS; the admin endpoints
never answer it, whatever the origin. The allow-list is the union of every app's
``allowed_origins``: a preflight carries no body, so it cannot say which app's license it is
for. It is read from the store at most every ``ttl`` seconds (and at once after this process
changes an app), and only for requests that carry an ``Origin`` header, so SDK and server
clients cost nothing. No credentials are ever allowed (``Access-Control-Allow-Credentials`` is
never sent), and every public answer carries ``Vary: Origin`` so a shared cache never hands
one origin's answer to another (Fetch standard, CORS protocol).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

from flask import Response, request

from ..core.errors import InvalidRequest
from ..store.validation import origin as normalize_origin

#: seconds an allow-list read from the store is reused
ALLOW_LIST_TTL: Final = 5.0
#: seconds a browser may cache a preflight answer
PREFLIGHT_MAX_AGE: Final = "600"
ALLOWED_REQUEST_HEADERS: Final = "Content-Type, X-Request-ID"
EXPOSED_HEADERS: Final = (
    "X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)
_SKIPPED_METHODS: Final = frozenset({"HEAD", "OPTIONS"})
#: seconds before a failed read of the allow-list is tried again
_RETRY_AFTER_FAILURE: Final = 1.0

log = logging.getLogger("licensechain.api")


class OriginAllowList:
    """The origins allowed to call the public endpoints, cached for ``ttl`` seconds.

    ``load`` returns the normalized origins (``scheme://host[:port]``); it is called with no
    lock held, so a slow store never blocks the requests that find a fresh list.
    """

    def __init__(self, load: Callable[[], Iterable[str]], ttl: float = ALLOW_LIST_TTL) -> None:
        self._load = load
        self._ttl = ttl
        self._lock = threading.Lock()
        self._origins: frozenset[str] = frozenset()
        self._expires = 0.0  # monotonic seconds

    def allowed(self, origin: str) -> str | None:
        """The normalized ``origin`` when it is allowed, else ``None``."""
        try:
            normalized = normalize_origin(origin, "Origin")
        except InvalidRequest:  # "null", a path, garbage: never allowed
            return None
        return normalized if normalized in self._current() else None

    def invalidate(self) -> None:
        """Re-read the list on the next request (an app's origins just changed)."""
        with self._lock:
            self._expires = 0.0

    def _current(self) -> frozenset[str]:
        now = time.monotonic()
        if now < self._expires:
            return self._origins
        try:
            origins = frozenset(self._load())
        except Exception as error:  # the store is down: keep the last list, allow nothing new
            log.warning("could not read the CORS allow-list: %s", error)
            with self._lock:
                self._expires = now + _RETRY_AFTER_FAILURE
            return self._origins
        with self._lock:
            self._origins, self._expires = origins, now + self._ttl
        return origins


def preflight(allow: OriginAllowList) -> Response | None:
    """The answer to ``OPTIONS`` (``None`` for other methods): 204 with ``Allow``, plus the
    CORS headers when it is a preflight (``Origin`` and ``Access-Control-Request-Method``)
    from an allowed origin."""
    if request.method != "OPTIONS":
        return None
    rule = request.url_rule
    methods = sorted(rule.methods or ()) if rule is not None else ["OPTIONS"]
    response = Response(status=204)
    response.headers["Allow"] = ", ".join(methods)
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin is None or "Access-Control-Request-Method" not in request.headers:
        return response
    allowed = allow.allowed(origin)
    if allowed is not None:
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = allowed
        headers["Access-Control-Allow-Methods"] = ", ".join(
            m for m in methods if m not in _SKIPPED_METHODS
        )
        headers["Access-Control-Allow-Headers"] = ALLOWED_REQUEST_HEADERS
        headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def add_cors_headers(response: Response, allow: OriginAllowList) -> Response:
    """``Vary: Origin`` always; the allow and expose headers when the origin is allowed."""
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin is not None and "Access-Control-Allow-Origin" not in response.headers:
        allowed = allow.allowed(origin)
        if allowed is not None:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response
