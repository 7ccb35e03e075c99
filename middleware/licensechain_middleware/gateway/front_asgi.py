"""The gateway's outermost ASGI layer: its own endpoints, request ids, the access log.

    ASGIFront -> LicenseGateASGI -> ASGIProxy -> upstream (HTTP or WebSocket)

As in ``front_wsgi``, the request id is fixed here, before the gate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from flask_licensechain.core.gate import request_id

from .bodies import CHUNKED_KEY
from .metrics import EngineCounters
from .observe import RECORD_KEY, RequestRecord
from .ops import OpsEndpoints
from .outcome import apply_decision

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("licensechain.gateway")

_STARTS = ("http.response.start", "websocket.http.response.start")


class ASGIFront:
    def __init__(
        self,
        app: ASGIApp,
        ops: OpsEndpoints,
        readiness: Callable[[], Awaitable[Mapping[str, bool]]],
        counters: EngineCounters | None = None,
        *,
        access_log: bool = True,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.ops = ops
        self.readiness = readiness
        self.counters = counters
        self.access_log = access_log
        self._rid_name = request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if kind == "http" and self.ops.handles(path):
            await self._ops(scope, send)
            return
        rid = self._fix_request_id(scope)
        method = scope.get("method", "GET") if kind == "http" else "WEBSOCKET"
        record = RequestRecord(method, path, request_id=rid)
        scope[RECORD_KEY] = record
        rid_header = (self._rid_name, rid.encode("latin-1"))

        async def capture(message: Message) -> None:
            mtype = message["type"]
            if mtype in _STARTS:
                record.status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(k.lower() == self._rid_name for k, _ in headers):
                    message["headers"] = [*headers, rid_header]
            elif mtype == "websocket.accept":
                record.status = 101
            elif mtype == "websocket.close" and not record.status:
                record.status = 403  # closed before the handshake was accepted
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            record.status = record.status or 500
            raise
        finally:
            apply_decision(scope, record)
            record.finish(log_enabled=self.access_log)
            if self.counters is not None:
                self.counters.sync()

    def _fix_request_id(self, scope: Scope) -> str:
        """The request's id, written back into the scope's headers for the gate and upstream.

        The same pass notes a chunked body under ``CHUNKED_KEY``: the gate removes
        ``Transfer-Encoding`` (hop-by-hop) before the proxy sees the request.
        """
        inbound: str | None = None
        others: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered == self._rid_name:
                inbound = value.decode("latin-1")
            else:
                if lowered == b"transfer-encoding":
                    scope[CHUNKED_KEY] = True
                others.append((name, value))
        rid = request_id(inbound)
        others.append((self._rid_name, rid.encode("latin-1")))
        scope["headers"] = others
        return rid

    async def _ops(self, scope: Scope, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        checks: Mapping[str, bool] | None = None
        if self.ops.wants_readiness(method, path):
            try:
                checks = await self.readiness()
            except Exception:
                log.exception("readiness check failed")
                checks = {"gate": False}
        # Rendering the metrics of every worker reads files: off the event loop.
        answer = await asyncio.to_thread(self.ops.answer, method, path, checks)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers],
            }
        )
        body = b"" if scope["method"] == "HEAD" else answer.body
        await send({"type": "http.response.body", "body": body})
