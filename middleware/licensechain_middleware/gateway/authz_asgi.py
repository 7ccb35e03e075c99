"""The forward-auth endpoint as ASGI, for uvicorn: ``LicenseGateASGI``'s decision.

The same protocol as ``authz.py`` (paths, trust, answers), read from an ASGI scope:
the original request becomes the scope a server would have given the gate, and
``LicenseGateASGI`` decides. With httptools and uvloop installed, uvicorn spends a
fraction of gunicorn's CPU per request on this small answer (``benchmarks/forward_auth``).
A protocol header sent twice is refused (400): the original request must be one request.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

from flask_licensechain.core.errors import LicenseChainError
from flask_licensechain.core.gate import render_refusal, request_id

from ..asgi import RESULT_KEY, LicenseGateASGI, Message, Receive, Scope, Send
from ..config import GateConfig
from ..identity import IDENTITY_KEYS
from ..paths import BadPath, encode_path
from .authz import (
    NGINX_PATH,
    PATH_HEADER,
    BadForwardRequest,
    Original,
    UntrustedPeer,
    describe,
    refusal_headers,
)
from .observe import RECORD_KEY, RequestRecord

#: The proxies' headers that describe the original request, in both spellings never
#: passed to the gate (``X-Forwarded-For`` stays: it names the client).
_PROTOCOL: Final = frozenset(
    {
        b"x-original-uri",
        b"x-original-method",
        b"x-forwarded-method",
        b"x-forwarded-uri",
        b"x-forwarded-host",
        b"x-forwarded-proto",
    }
)
_IDENTITY: Final = frozenset(name.encode() for name in IDENTITY_KEYS)
_PATH_HEADER: Final = PATH_HEADER.lower().encode()
_ALLOWED_START: Final = (b"content-length", b"0"), (b"cache-control", b"no-store")


class AuthzASGI:
    """ASGI app answering the authorization paths with ``LicenseGateASGI``'s decision."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self.gate = LicenseGateASGI(_allowed, config)
        self.engine = self.gate.engine
        self._trusted = self.engine.client_address.is_trusted
        self._rid_header = config.request_id_header
        self._rid_name = config.request_id_header.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        path: str = scope["path"]
        nginx = path == NGINX_PATH
        head = scope.get("method") == "HEAD"
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            client = scope.get("client")
            peer = client[0] if client else None
            if not peer or not self._trusted(peer):
                raise UntrustedPeer(peer)
            raw = scope.get("raw_path") or path.encode()
            query: bytes = scope.get("query_string", b"")
            target = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            original = describe(path, scope.get("method", ""), target, _getter(headers))
            inner = _inner_scope(scope, original)
        except LicenseChainError as exc:
            rid = request_id(_first(headers, self._rid_name))
            refusal = render_refusal(exc, rid, self._rid_header)
            await self._answer(send, refusal.status, refusal.headers, refusal.body, nginx, head)
            return

        captured: dict[str, Any] = {}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message["headers"]
            else:
                captured["body"] = captured.get("body", b"") + message.get("body", b"")

        await self.gate(inner, _no_body, capture)
        decision = inner.get(RESULT_KEY)
        scope[RESULT_KEY] = decision
        record = scope.get(RECORD_KEY)
        if isinstance(record, RequestRecord):
            record.method = original.method
            record.path = decision.path if decision is not None and decision.path else path
        status = int(captured["status"])
        if status == 200:
            await send(
                {"type": "http.response.start", "status": 200, "headers": captured["headers"]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in captured["headers"]]
        await self._answer(send, status, pairs, captured.get("body", b""), nginx, head)

    @staticmethod
    async def _answer(
        send: Send,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        nginx: bool,
        head: bool,
    ) -> None:
        status, headers = refusal_headers(status, headers, body, nginx)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def readiness(self) -> dict[str, bool]:
        return await self.gate.readiness()

    def close(self) -> None:
        self.gate.close()


async def _allowed(scope: Scope, receive: Receive, send: Send) -> None:
    """The gate let the request through: say so, with its identity headers."""
    headers = list(_ALLOWED_START)
    headers += [(k, v) for k, v in scope["headers"] if k in _IDENTITY]
    headers.append((_PATH_HEADER, encode_path(scope[RESULT_KEY].path).encode("ascii")))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _no_body() -> Message:
    """The endpoint never reads a body: the gate gets an empty one."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _first(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _getter(headers: list[tuple[bytes, bytes]]) -> Any:
    """A header reader for ``describe``; a protocol header sent twice is refused."""
    seen: dict[str, str] = {}
    twice: set[str] = set()
    for key, value in headers:
        name = key.lower().decode("latin-1")
        if name in seen:
            twice.add(name)
        seen[name] = value.decode("latin-1")

    def get(name: str) -> str | None:
        if name in twice and name.encode() in _PROTOCOL:
            raise BadForwardRequest(f"the proxy sent {name} twice")
        return seen.get(name)

    return get


def _inner_scope(scope: Scope, original: Original) -> Scope:
    """The original request as the scope a server would have given the gate."""
    raw_path, query = original.split()
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("path is not UTF-8") from None
    headers = [
        (k, v)
        for k, v in scope["headers"]
        if (k.lower().replace(b"_", b"-") if b"_" in k else k.lower()) not in _PROTOCOL
        and (original.host is None or k.lower() != b"host")
    ]
    if original.host:
        headers.append((b"host", original.host.encode("latin-1")))
    return {
        "type": "http",
        "asgi": scope.get("asgi", {"version": "3.0"}),
        "http_version": scope.get("http_version", "1.1"),
        "method": original.method,
        "scheme": original.scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": scope.get("client"),
        "server": scope.get("server"),
    }
