"""Request bodies at the gateway: which requests may carry one, how long the client may
take to send it, and whether the upstream connection that carried it is used again.

**Methods without a body.** GET, HEAD, OPTIONS and TRACE define no meaning for request
content (RFC 9110 sections 9.3.1, 9.3.2, 9.3.7, 9.3.8), and section 9.3.1 warns that such
content may be refused "because of its potential as a request smuggling attack": an
upstream that does not read it (Python's ``http.server`` does not, on GET) takes its
bytes for the next request on the connection, a request the gate never saw. The gateway
answers such a request 400 ``invalid_request`` before it reaches the upstream, unless
``allow_get_body`` is on. ``Content-Length: 0`` is no body and passes.

**Upstream connections after a body.** A body on any method can be left unread by the
upstream (a 404 or 401 answered before reading it). A pooled upstream connection that
carried one is therefore not used again: the request goes with ``Connection: close``, so
the upstream stops reading after it (RFC 9112 section 9.6) and the pool drops the
connection. ``reuse_upstream_after_body`` turns this off for upstreams that always read
or discard a body (gunicorn, uvicorn, nginx do).

**The body deadline.** The client has ``body_timeout`` seconds to send the body, plus one
second for every ``body_min_rate`` bytes it has sent (Apache ``mod_reqtimeout``'s
``MinRate``): a body that arrives at ``body_min_rate`` bytes a second or faster never
times out, a trickle is answered 408 ``request_timeout`` after a bounded time. Up to
``body_buffer_bytes`` of the body are read before the upstream is contacted (as nginx's
``proxy_request_buffering``), so a slow client holds no upstream connection while it sends
a small body; a larger body streams on under the same deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from flask_licensechain.core.errors import InvalidRequest, LicenseChainError

#: Set in the WSGI environ by ``WSGIFront`` when the request came chunked (the gate then
#: removes ``Transfer-Encoding``, a hop-by-hop header, before the proxy sees the request).
CHUNKED_KEY: Final = "licensechain.gateway.chunked"

#: Methods whose request content has no defined meaning (RFC 9110 section 9.3).
BODYLESS_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class BodyNotAllowed(InvalidRequest):
    """400: a request body on a method that defines none."""

    description = "This request method takes no body."

    def __init__(self, method: str) -> None:
        super().__init__(reason="body_not_allowed", detail=f"{method} request with a body")


class BodyIncomplete(InvalidRequest):
    """400: the client went away or broke the framing in the middle of its body."""

    description = "The request body is incomplete."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(reason="body_incomplete", detail=detail)


class RequestTimeout(LicenseChainError):
    """408: the request body did not arrive within the body deadline (RFC 9110 15.5.9)."""

    code = "request_timeout"
    status_code = 408
    description = "The request body did not arrive in time."


@dataclass(frozen=True)
class BodyPolicy:
    """What the gateway does with request bodies (seconds, bytes, bytes a second)."""

    allow_get_body: bool = False
    reuse_upstream_after_body: bool = False
    timeout: float = 10.0
    min_rate: float = 1024.0
    buffer_bytes: int = 1024 * 1024

    def refuses(self, method: str) -> bool:
        """True when a body on ``method`` is refused (400) rather than forwarded."""
        return not self.allow_get_body and method.upper() in BODYLESS_METHODS

    def deadline(self) -> BodyDeadline:
        return BodyDeadline(self.timeout, self.min_rate)


class BodyDeadline:
    """``timeout`` seconds from now, extended by one second per ``min_rate`` bytes received."""

    __slots__ = ("_end", "_seconds_per_byte")

    def __init__(self, timeout: float, min_rate: float) -> None:
        self._end = time.monotonic() + timeout
        self._seconds_per_byte = 1.0 / min_rate

    def received(self, size: int) -> None:
        self._end += size * self._seconds_per_byte

    def remaining(self) -> float:
        """Seconds left; raises ``RequestTimeout`` when none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise RequestTimeout(detail="request body deadline passed")
        return left

    def read_size(self, largest: int) -> int:
        """How much to ask for in one read: what ``min_rate`` brings in half the time left.

        A read returns only when it has its bytes, so it must not ask for more than the
        client owes before the deadline; the deadline then grows at least as fast as it is used.
        """
        owed = int(self.remaining() / self._seconds_per_byte / 2)
        return max(1, min(largest, owed))
