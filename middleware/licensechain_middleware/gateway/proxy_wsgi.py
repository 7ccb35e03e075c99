"""The WSGI reverse proxy: the request goes upstream through a pooled ``httpx.Client``.

Both bodies stream in fixed-size chunks, so memory stays bounded whatever their
size. The gate wraps this app; by the time a request arrives here it has been
allowed and its headers cleaned. What happens to a request body (refused on GET,
read under a deadline, buffered, ``Connection: close`` upstream) is ``bodies.py``'s
policy.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx

from .bodies import (
    CHUNKED_KEY,
    BodyDeadline,
    BodyIncomplete,
    BodyNotAllowed,
    BodyPolicy,
    RequestTimeout,
)
from .client import SyncTransportHolder
from .errors import BadGateway, BadTarget, GatewayTimeout, error_body, error_headers
from .forwarding import client_address
from .headers import replace_forwarded, request_headers_from_environ, response_headers
from .observe import RequestRecord, record_of_environ
from .urls import UpstreamBase, encode_path

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("licensechain.gateway")

CHUNK_SIZE = 64 * 1024


class UpstreamBodyError(Exception):
    """The upstream broke off a response body after its headers were sent.

    Raised out of the WSGI iterable on purpose: the server then drops the client
    connection, which is the only honest signal left once the status is out.
    """


@contextlib.contextmanager
def _time_limit(seconds: float, sock: socket.socket | None) -> Iterator[None]:
    """Raise ``TimeoutError`` out of the block after ``seconds``.

    Under gevent (gunicorn's ``gevent`` workers) a ``gevent.Timeout`` bounds the whole
    read, however many small packets it takes. Otherwise the client socket's timeout
    bounds each ``recv`` of the read: enough against a client that stops, not against
    one that trickles (gthread workers belong behind a buffering proxy, see the README).
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        import gevent  # type: ignore[import-untyped]  # deferred: optional, here when it patched

        with gevent.Timeout(seconds, TimeoutError):
            yield
        return
    if sock is None:
        yield
        return
    prior = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        yield
    finally:
        sock.settimeout(prior)


class _ClientBody:
    """Reads ``wsgi.input`` under the body deadline (408 when it passes)."""

    __slots__ = ("_deadline", "_sock", "_stream", "remaining")

    def __init__(self, environ: WSGIEnvironment, deadline: BodyDeadline) -> None:
        self._stream = environ["wsgi.input"]
        self._sock: socket.socket | None = environ.get("gunicorn.socket")
        self._deadline = deadline
        length = environ.get("CONTENT_LENGTH") or ""
        #: bytes still owed by a Content-Length body; None for a chunked one
        self.remaining: int | None = int(length) if length.isdigit() else None

    def read(self) -> bytes:
        """The next part of the body; ``b""`` at its end."""
        largest = CHUNK_SIZE if self.remaining is None else min(CHUNK_SIZE, self.remaining)
        if largest == 0:
            return b""
        size = self._deadline.read_size(largest)
        try:
            with _time_limit(self._deadline.remaining(), self._sock):
                chunk: bytes = self._stream.read(size)
        except TimeoutError:
            raise RequestTimeout(detail="request body deadline passed") from None
        except OSError as exc:  # gunicorn's NoMoreData and a reset both are OSErrors
            raise BodyIncomplete(detail=repr(exc)) from None
        if self.remaining is not None:
            if not chunk:
                raise BodyIncomplete(detail="client closed before the end of its body")
            self.remaining -= len(chunk)
        self._deadline.received(len(chunk))
        return chunk


def _has_body(environ: WSGIEnvironment) -> bool:
    """Whether the request has content: a non-zero Content-Length, or a chunked body.

    The gate has removed ``Transfer-Encoding`` by now; ``WSGIFront`` noted it under
    ``CHUNKED_KEY`` before (a request with neither header has no body, RFC 9112 6.3).
    """
    length = environ.get("CONTENT_LENGTH") or ""
    if length:
        return length.strip("0") != ""
    return bool(environ.get(CHUNKED_KEY))


def _request_body(
    environ: WSGIEnvironment, policy: BodyPolicy
) -> tuple[bytes | Iterator[bytes] | None, bool]:
    """The body to send upstream and whether there is one.

    Up to ``policy.buffer_bytes`` are read before returning (the upstream is not
    contacted meanwhile); a longer body continues as an iterator. Raises
    ``RequestTimeout`` or ``BodyIncomplete`` while reading.
    """
    client = _ClientBody(environ, policy.deadline())
    parts: list[bytes] = []
    buffered = 0
    while buffered < policy.buffer_bytes:
        chunk = client.read()
        if not chunk:
            body = b"".join(parts)
            return (body or None), bool(body)
        parts.append(chunk)
        buffered += len(chunk)

    def rest() -> Iterator[bytes]:
        yield from parts
        while chunk := client.read():
            yield chunk

    return rest(), True


def _status_line(response: httpx.Response) -> str:
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{response.status_code} {phrase}"


class _StreamedBody:
    """The WSGI iterable of an upstream body; closing it returns the connection to the pool."""

    def __init__(self, response: httpx.Response, record: RequestRecord | None) -> None:
        self._response = response
        self._record = record

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_raw(CHUNK_SIZE)
        except httpx.HTTPError as exc:
            log.warning("upstream body broke off: %s", type(exc).__name__)
            if self._record is not None:
                self._record.upstream_error = "body_incomplete"
            raise UpstreamBodyError("upstream response body incomplete") from None

    def close(self) -> None:
        self._response.close()


class WSGIProxy:
    """Forward every request to ``upstream``; 502/504 with a contract body when it fails."""

    def __init__(
        self,
        upstream: UpstreamBase,
        transports: SyncTransportHolder,
        *,
        forwarded: bool = True,
        bodies: BodyPolicy | None = None,
    ) -> None:
        self.upstream = upstream
        self.transports = transports
        self.forwarded = forwarded
        self.bodies = bodies or BodyPolicy()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        record = record_of_environ(environ)
        path = encode_path(
            (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
        )
        headers = request_headers_from_environ(environ)
        if self.forwarded:
            headers = replace_forwarded(
                headers,
                client=client_address(environ),
                scheme=environ.get("wsgi.url_scheme", "http"),
                host=environ.get("HTTP_HOST"),
            )
        method = environ["REQUEST_METHOD"]
        body: bytes | Iterator[bytes] | None = None
        if _has_body(environ):
            if self.bodies.refuses(method):
                return self._refuse(BodyNotAllowed(method), start_response, record)
            try:
                body, present = _request_body(environ, self.bodies)
            except (RequestTimeout, BodyIncomplete) as exc:
                return self._refuse(exc, start_response, record)
            if present:
                length = environ.get("CONTENT_LENGTH") or ""
                if isinstance(body, bytes):
                    headers.append(("content-length", str(len(body))))
                elif length.isdigit():
                    headers.append(("content-length", length))
                if not self.bodies.reuse_upstream_after_body:
                    headers.append(("connection", "close"))
        try:
            request = httpx.Request(
                method,
                self.upstream.http_url(path, environ.get("QUERY_STRING", "")),
                headers=headers,
                content=body,
                extensions=self.transports.extensions,
            )
        except (httpx.InvalidURL, ValueError) as exc:  # a target httpx will not send
            return self._fail(BadTarget(detail=repr(exc)), environ, start_response, record)
        started = time.perf_counter()
        try:
            response = self.transports.get().handle_request(request)
        except (RequestTimeout, BodyIncomplete) as exc:  # the client, while streaming its body
            return self._refuse(exc, start_response, record)
        except httpx.TimeoutException as exc:
            return self._fail(GatewayTimeout(detail=repr(exc)), environ, start_response, record)
        except httpx.HTTPError as exc:
            return self._fail(BadGateway(detail=repr(exc)), environ, start_response, record)
        finally:
            if record is not None:
                record.upstream_seconds = time.perf_counter() - started
        if record is not None:
            record.upstream_status = response.status_code
        start_response(_status_line(response), response_headers(response.headers.multi_items()))
        return _StreamedBody(response, record)

    @staticmethod
    def _refuse(
        error: BodyNotAllowed | BodyIncomplete | RequestTimeout,
        start_response: StartResponse,
        record: RequestRecord | None,
    ) -> list[bytes]:
        """The client's fault, found before the upstream answered: nothing was relayed."""
        log.info("request body refused: %s", error.detail)
        body = error_body(error, record.request_id if record is not None else None)
        start_response(
            f"{error.status_code} {HTTPStatus(error.status_code).phrase}",
            error_headers(error, body),
        )
        return [body]

    @staticmethod
    def _fail(
        error: BadGateway | GatewayTimeout | BadTarget,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        record: RequestRecord | None,
    ) -> list[bytes]:
        log.warning("upstream %s: %s", error.code, error.detail)
        request_id = record.request_id if record is not None else None
        if record is not None:
            record.upstream_error = error.code
        body = error_body(error, request_id)
        start_response(
            f"{error.status_code} {HTTPStatus(error.status_code).phrase}",
            error_headers(error, body),
        )
        return [body]
