"""The ASGI reverse proxy: HTTP through a pooled ``httpx.AsyncClient``, WebSockets
through the ``websockets`` library.

Both HTTP bodies stream in chunks. When the client goes away during a download
the upstream response is closed at once rather than read to its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx

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


async def _request_body(receive: Receive, first: Message) -> AsyncIterator[bytes]:
    message = first
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
        message = await receive()


def _left(message: asyncio.Future[Message]) -> bool:
    return (
        not message.cancelled()
        and message.exception() is None
        and (message.result()["type"] == "http.disconnect")
    )


class ASGIProxy:
    """Forward every HTTP request and WebSocket to ``upstream``."""

    def __init__(
        self, upstream: UpstreamBase, transports: AsyncTransportHolder, *, forwarded: bool = True
    ) -> None:
        self.upstream = upstream
        self.transports = transports
        self.forwarded = forwarded

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
        content: AsyncIterator[bytes] | bytes | None
        first = await receive()
        if first["type"] == "http.disconnect":
            return  # gone before sending its body: nothing to forward
        if first.get("more_body", False):
            content = _request_body(receive, first)
            length = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
            if length:
                headers.append((b"content-length", length[0]))
        else:
            content = first.get("body", b"") or None
            if content is not None:
                headers.append((b"content-length", str(len(content)).encode()))
        try:
            request = httpx.Request(
                scope["method"],
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
