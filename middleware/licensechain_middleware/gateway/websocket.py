"""WebSocket proxying for the ASGI gateway (the gate has already checked the handshake).

The upstream leg uses the ``websockets`` library. Messages are relayed as whole
text or binary messages in both directions; a close on either side closes the
other with the same code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from .errors import BadGateway, GatewayTimeout, error_body, error_headers
from .forwarding import forwarded_for_scope
from .headers import WEBSOCKET_HANDSHAKE, request_headers_from_scope
from .urls import UpstreamBase, encode_path

if TYPE_CHECKING:
    from .observe import RequestRecord

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("licensechain.gateway")

#: Largest message relayed (either way); bigger ones close the socket with 1009.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
OPEN_TIMEOUT = 10.0


async def proxy_websocket(
    upstream: UpstreamBase,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    record: RequestRecord | None = None,
    forwarded: bool = True,
) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    skip = WEBSOCKET_HANDSHAKE | {"origin", "user-agent"}
    raw_headers = request_headers_from_scope(scope["headers"], extra_skip=skip)
    if forwarded:
        raw_headers = forwarded_for_scope(raw_headers, scope)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]
    raw = dict(scope["headers"])
    origin = raw.get(b"origin")
    path = encode_path((scope.get("root_path", "") + scope["path"]).encode("utf-8"))
    url = upstream.websocket_url(path, scope.get("query_string", b"").decode("latin-1"))
    started = time.perf_counter()
    try:
        upstream_ws = await connect(
            url,
            additional_headers=headers,
            user_agent_header=raw.get(b"user-agent", b"").decode("latin-1") or None,
            origin=Origin(origin.decode("latin-1")) if origin else None,
            subprotocols=[Subprotocol(p) for p in scope.get("subprotocols", [])] or None,
            compression=None,
            proxy=None,
            open_timeout=OPEN_TIMEOUT,
            max_size=MAX_MESSAGE_BYTES,
        )
    except TimeoutError as exc:
        await _refuse(GatewayTimeout(detail=repr(exc)), scope, send, record)
        return
    except InvalidStatus as exc:
        await _refuse(
            BadGateway(detail=f"upstream refused the WebSocket: {exc.response.status_code}"),
            scope,
            send,
            record,
        )
        return
    except (OSError, InvalidHandshake) as exc:
        await _refuse(BadGateway(detail=repr(exc)), scope, send, record)
        return
    finally:
        if record is not None:
            record.upstream_seconds = time.perf_counter() - started
    if record is not None:
        record.upstream_status = 101
    async with upstream_ws:
        await send({"type": "websocket.accept", "subprotocol": upstream_ws.subprotocol})
        await _relay(upstream_ws, receive, send)


async def _relay(upstream_ws: ClientConnection, receive: Receive, send: Send) -> None:
    to_upstream = asyncio.ensure_future(_client_to_upstream(upstream_ws, receive))
    to_client = asyncio.ensure_future(_upstream_to_client(upstream_ws, send))
    done, pending = await asyncio.wait(
        {to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("websocket relay ended: %r", task.exception())


async def _client_to_upstream(upstream_ws: ClientConnection, receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            data = message.get("text")
            await upstream_ws.send(data if data is not None else message.get("bytes") or b"")
        elif message["type"] == "websocket.disconnect":
            await upstream_ws.close(code=_closable(message.get("code", 1000)))
            return


async def _upstream_to_client(upstream_ws: ClientConnection, send: Send) -> None:
    try:
        async for data in upstream_ws:
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed:
        pass
    code = upstream_ws.close_code or 1000
    reason = upstream_ws.close_reason or ""
    await send({"type": "websocket.close", "code": _closable(code), "reason": reason})


def _closable(code: int) -> int:
    """Codes an endpoint may send (1005/1006/1015 are reserved for reporting)."""
    return 1000 if code in (1005, 1006, 1015) else code


async def _refuse(
    error: BadGateway | GatewayTimeout, scope: Scope, send: Send, record: RequestRecord | None
) -> None:
    log.warning("websocket upstream %s: %s", error.code, error.detail)
    if record is not None:
        record.upstream_error = error.code
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_body(error, record.request_id if record is not None else None)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": error.status_code,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in error_headers(error, body)
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1011})
