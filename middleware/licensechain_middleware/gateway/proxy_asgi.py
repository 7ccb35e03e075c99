"""The ASGI reverse proxy: HTTP through a pooled ``httpx.AsyncClient``, WebSockets
through the ``websockets`` library.

Both HTTP bodies stream in chunks. When the client goes away during a download
the upstream response is closed at once rather than read to its end. What happens
to a request body (refused on GET, read under a deadline, buffered,
``Connection: close`` upstream) is ``bodies.py``'s policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from .bodies import (
    CHUNKED_KEY,
    BodyDeadline,
    BodyIncomplete,
    BodyNotAllowed,
    BodyPolicy,
    RequestTimeout,
)
from .client import AsyncTransportHolder
from .errors import BadGateway, BadTarget, GatewayTimeout, error_body, error_headers
from .forwarding import forwarded_for_scope
from .headers import request_headers_from_scope, response_headers
from .observe import RECORD_KEY, RequestRecord
from .urls import UpstreamBase, encode_path
from .websocket import proxy_websocket

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("licensechain.gateway")

CHUNK_SIZE = 64 * 1024


class ClientDisconnected(Exception):
    pass


def _record(scope: Scope) -> RequestRecord | None:
    record = scope.get(RECORD_KEY)
    return record if isinstance(record, RequestRecord) else None


def upstream_path(scope: Scope) -> str:
    return encode_path((scope.get("root_path", "") + scope["path"]).encode("utf-8"))


class _ClientBody:
    """``receive`` under the body deadline (408 when it passes)."""

    __slots__ = ("_deadline", "_receive")

    def __init__(self, receive: Receive, deadline: BodyDeadline) -> None:
        self._receive = receive
        self._deadline = deadline

    async def next(self) -> Message:
        try:
            message = await asyncio.wait_for(self._receive(), self._deadline.remaining())
        except TimeoutError:
            raise RequestTimeout(detail="request body deadline passed") from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        self._deadline.received(len(message.get("body", b"")))
        return message


async def _rest(client: _ClientBody, parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    while True:
        message = await client.next()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _declares_body(scope: Scope) -> bool:
    """A non-zero Content-Length, or a chunked body (noted by ``ASGIFront``)."""
    if scope.get(CHUNKED_KEY):
        return True
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return bool(value.strip(b"0") != b"")
    return False


def _left(message: asyncio.Future[Message]) -> bool:
    return (
        not message.cancelled()
        and message.exception() is None
        and (message.result()["type"] == "http.disconnect")
    )


class ASGIProxy:
    """Forward every HTTP request and WebSocket to ``upstream``."""

    def __init__(
        self,
        upstream: UpstreamBase,
        transports: AsyncTransportHolder,
        *,
        forwarded: bool = True,
        bodies: BodyPolicy | None = None,
    ) -> None:
        self.upstream = upstream
        self.transports = transports
        self.forwarded = forwarded
        self.bodies = bodies or BodyPolicy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await proxy_websocket(
                self.upstream, scope, receive, send, record=_record(scope), forwarded=self.forwarded
            )
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.transports.get()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.transports.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = _record(scope)
        headers = request_headers_from_scope(scope["headers"])
        if self.forwarded:
            headers = forwarded_for_scope(headers, scope)
        method = scope["method"]
        content: AsyncIterator[bytes] | bytes | None = None
        if _declares_body(scope):
            if self.bodies.refuses(method):
                await self._refuse(BodyNotAllowed(method), send, record)
                return
            try:
                content = await self._buffer(scope, receive)
            except ClientDisconnected:
                return  # gone before sending its body: nothing to forward
            except RequestTimeout as exc:
                await self._refuse(exc, send, record)
                return
            if isinstance(content, bytes):
                headers.append((b"content-length", str(len(content)).encode()))
            elif content is not None:
                length = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
                if length:
                    headers.append((b"content-length", length[0]))
            if content is not None and not self.bodies.reuse_upstream_after_body:
                headers.append((b"connection", b"close"))
        elif (await receive())["type"] == "http.disconnect":
            return  # (the empty body's message is taken, so the next one is the client leaving)
        try:
            request = httpx.Request(
                method,
                self.upstream.http_url(
                    upstream_path(scope), scope.get("query_string", b"").decode("latin-1")
                ),
                headers=headers,
                content=content,
                extensions=self.transports.extensions,
            )
        except (httpx.InvalidURL, ValueError) as exc:  # a target httpx will not send
            await self._fail(BadTarget(detail=repr(exc)), send, record)
            return
        started = time.perf_counter()
        try:
            response = await self.transports.get().handle_async_request(request)
        except ClientDisconnected:
            return
        except RequestTimeout as exc:  # the client, while its body streams upstream
            await self._refuse(exc, send, record)
            return
        except httpx.TimeoutException as exc:
            await self._fail(GatewayTimeout(detail=repr(exc)), send, record)
            return
        except httpx.HTTPError as exc:
            await self._fail(BadGateway(detail=repr(exc)), send, record)
            return
        finally:
            if record is not None:
                record.upstream_seconds = time.perf_counter() - started
        if record is not None:
            record.upstream_status = response.status_code
        try:
            await self._relay(response, receive, send, record)
        finally:
            await response.aclose()

    async def _buffer(self, scope: Scope, receive: Receive) -> AsyncIterator[bytes] | bytes | None:
        """Up to ``buffer_bytes`` of the body before the upstream is contacted; the rest
        streams on, under the same deadline."""
        client = _ClientBody(receive, self.bodies.deadline())
        parts: list[bytes] = []
        buffered = 0
        while buffered < self.bodies.buffer_bytes:
            message = await client.next()
            chunk = message.get("body", b"")
            if chunk:
                parts.append(chunk)
                buffered += len(chunk)
            if not message.get("more_body", False):
                return b"".join(parts) or None
        return _rest(client, parts)

    @staticmethod
    async def _refuse(
        error: BodyNotAllowed | BodyIncomplete | RequestTimeout,
        send: Send,
        record: RequestRecord | None,
    ) -> None:
        """The client's fault, found before the upstream answered. The connection is
        closed after the answer: what is left of the body is never read as a request."""
        log.info("request body refused: %s", error.detail)
        body = error_body(error, record.request_id if record is not None else None)
        headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in error_headers(error, body)
        ]
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [*headers, (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    async def _relay(
        response: httpx.Response, receive: Receive, send: Send, record: RequestRecord | None
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in response_headers(response.headers.multi_items())
                ],
            }
        )
        # httpx sent the whole request body before reading this response, so the next
        # message is the client leaving: then stop reading the upstream at once.
        disconnect = asyncio.ensure_future(receive())
        try:
            async for chunk in response.aiter_raw(CHUNK_SIZE):
                if disconnect.done() and _left(disconnect):
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:
            log.warning("upstream body broke off: %s", type(exc).__name__)
            if record is not None:
                record.upstream_error = "body_incomplete"
            # Raising makes the server drop the connection: the client sees a short body.
            raise
        finally:
            disconnect.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _fail(
        error: BadGateway | GatewayTimeout | BadTarget, send: Send, record: RequestRecord | None
    ) -> None:
        log.warning("upstream %s: %s", error.code, error.detail)
        if record is not None:
            record.upstream_error = error.code
        body = error_body(error, record.request_id if record is not None else None)
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in error_headers(error, body)
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
