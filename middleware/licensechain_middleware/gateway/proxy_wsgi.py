"""The WSGI reverse proxy: the request goes upstream through a pooled ``httpx.Client``.

Both bodies stream in fixed-size chunks, so memory stays bounded whatever their
size. The gate wraps this app; by the time a request arrives here it has been
allowed and its headers cleaned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx

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


def _request_body(environ: WSGIEnvironment) -> Iterator[bytes] | None:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        remaining = int(length)
        if remaining == 0:
            return None

        def sized() -> Iterator[bytes]:
            nonlocal remaining
            while remaining > 0:
                chunk = stream.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

        return sized()
    if environ.get("wsgi.input_terminated"):
        # No Content-Length: a chunked body (already de-chunked by the server) or none.
        # The framing headers may be gone by now (the gate drops hop-by-hop ones), so
        # read once to tell; an empty first read means there is no body at all.
        first = stream.read(CHUNK_SIZE)
        if not first:
            return None

        def unsized() -> Iterator[bytes]:
            yield first
            while chunk := stream.read(CHUNK_SIZE):
                yield chunk

        return unsized()
    return None


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
        self, upstream: UpstreamBase, transports: SyncTransportHolder, *, forwarded: bool = True
    ) -> None:
        self.upstream = upstream
        self.transports = transports
        self.forwarded = forwarded

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
        body = _request_body(environ)
        length = environ.get("CONTENT_LENGTH") or ""
        if body is not None and length.isdigit():
            headers.append(("content-length", length))
        try:
            request = httpx.Request(
                environ["REQUEST_METHOD"],
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
