"""The upstream the gateway tests proxy to, run as its own uvicorn process.

Plain ASGI (no framework), HTTP and WebSocket:

* ``/cookies``      -> two ``Set-Cookie`` headers
* ``/download?bytes=N`` -> N bytes streamed in 64 KiB chunks (Content-Length set)
* ``/upload``       -> reads the body in chunks, answers its size and a checksum
* ``/slow?seconds=S`` -> waits, then 200
* ``/broken?bytes=N`` -> promises N bytes, sends a quarter, then drops the connection
* ``/status/NNN``   -> that status
* anything else   -> JSON of method, path, raw path, query, headers (all repeats), body size
* websocket ``/ws/echo`` -> echoes messages, reports the handshake headers on "headers"

Run: ``python -m uvicorn upstream:app --app-dir tests/gateway_support --port P``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CHUNK = 64 * 1024


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, data: Any, status: int = 200) -> None:
    await _respond(
        send, status, json.dumps(data).encode(), [(b"content-type", b"application/json")]
    )


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def _drain(receive: Receive) -> tuple[int, str]:
    size, digest = 0, hashlib.sha256()
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body"):
            return size, digest.hexdigest()


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    size, _ = await _drain(receive)
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    await _json(
        send,
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body_bytes": size,
        },
    )


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    query = _query(scope)
    if path == "/cookies":
        await _respond(
            send,
            200,
            b"ok",
            [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/"), (b"x-multi", b"1")],
        )
    elif path == "/download":
        total = int(query.get("bytes", "0"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(total).encode()),
                    (b"content-type", b"application/octet-stream"),
                ],
            }
        )
        block = b"x" * CHUNK
        sent = 0
        while sent < total:
            part = block[: min(CHUNK, total - sent)]
            sent += len(part)
            await send({"type": "http.response.body", "body": part, "more_body": sent < total})
    elif path == "/upload":
        size, digest = await _drain(receive)
        await _json(send, {"bytes": size, "sha256": digest})
    elif path == "/slow":
        await asyncio.sleep(float(query.get("seconds", "5")))
        await _respond(send, 200, b"slow", [])
    elif path == "/broken":
        total = int(query.get("bytes", "1000000"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(total).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"y" * (total // 4), "more_body": True})
        raise RuntimeError("upstream dies in the middle of the body (on purpose)")
    elif path.startswith("/status/"):
        await _respond(send, int(path.rsplit("/", 1)[1]), b"", [])
    else:
        await _echo(scope, receive, send)


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect"
    if scope["path"] != "/ws/echo":
        await send({"type": "websocket.close", "code": 1008})
        return
    protocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "headers":
            headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
            await send({"type": "websocket.send", "text": json.dumps(headers)})
        elif text == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            return
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
