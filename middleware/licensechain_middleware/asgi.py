"""``LicenseGateASGI``: the license gate as pure ASGI middleware (no framework needed).

.. code-block:: python

    app = LicenseGateASGI(app, GateConfig(...))

It follows the WSGI gate step by step (see ``wsgi.py``), with ASGI's forms:

* ``lifespan`` (and any other scope type) passes straight through.
* ``http`` and ``websocket`` scopes are gated; a WebSocket on its handshake. A
  refused handshake gets the JSON error as an HTTP response when the server
  offers the ``websocket.http.response`` extension, and otherwise a
  ``websocket.close`` before accept (the server answers 403).
* Header names are compared lower-cased with ``_`` read as ``-``, so
  ``X_License_Subject`` is removed like ``X-License-Subject``.
* All per-request state lives inside ``__call__``. The app gets a copy of the
  scope with the cleaned headers, the normalised ``path`` and ``raw_path``, and
  ``licensechain.claims`` / ``licensechain.decision``; those two keys are also
  written into the scope the gate received, for outer middleware.
* A token not seen before is verified in a worker thread, and a ``redis://``
  rate limit uses ``limits``' asyncio storage, so neither blocks the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from flask_licensechain.core.errors import LicenseChainError
from flask_licensechain.core.verifier import LicenseClaims

from .config import GateConfig
from .engine import Decision, GateEngine
from .headers import REMOVED, bearer_token, connection_options, cookie_value, without_cookie
from .identity import IDENTITY_HEADERS, IDENTITY_KEYS
from .paths import check_raw_path, encode_path, normalise_path
from .responses import BadFraming, HeadersTooLarge, render, request_id

log = logging.getLogger("licensechain.gate")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
DecisionHook = Callable[[Decision], None]

CLAIMS_KEY: Final = "licensechain.claims"
DECISION_KEY: Final = "licensechain.decision"

_HOP: Final = frozenset(h.encode() for h in REMOVED)
_IDENTITY: Final = frozenset(h.encode() for h in IDENTITY_KEYS)
_REMOVED: Final = _HOP | _IDENTITY
#: Underscore spellings of these are dropped: a server that folds ``_`` into ``-``
#: would read them as framing.
_UNDERSCORE_DROP: Final = _REMOVED | {b"content-length", b"host"}
_IDENTITY_NAMES: Final = tuple(h.lower().encode() for h in IDENTITY_HEADERS)


class _Scan:
    """What one pass over the request headers found."""

    __slots__ = (
        "bearer",
        "connection",
        "content_length",
        "cookie",
        "forwarded_for",
        "headers",
        "origin",
        "preflight_method",
        "request_id",
        "size",
        "token",
        "transfer_encoding",
        "x_token",
    )

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.token: str | None = None
        self.bearer: str | None = None
        self.x_token: str | None = None
        self.cookie: str | None = None
        self.connection: bytes | None = None
        self.content_length: bytes | None = None
        self.transfer_encoding = False
        self.forwarded_for: str | None = None
        self.request_id: str | None = None
        self.preflight_method = False
        self.origin = False
        self.size = 0


class LicenseGateASGI:
    """Pure ASGI middleware that lets a request reach ``app`` only as the rules allow.

    :param app: the ASGI application to protect.
    :param config: a validated ``GateConfig``.
    :param on_decision: optional callable given every ``Decision``; exceptions are logged.
    """

    def __init__(
        self, app: ASGIApp, config: GateConfig, *, on_decision: DecisionHook | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.engine = GateEngine(config, asynchronous=True)
        self.on_decision = on_decision
        self._sources = config.token_sources
        self._cookie = config.token_cookie
        self._cookie_b = config.token_cookie.encode()
        self._strip = config.strip_token
        self._max_header_bytes = config.max_header_bytes
        self._request_id_name = config.request_id_header.lower().encode()
        self._identity_headers: dict[str, tuple[LicenseClaims, list[tuple[bytes, bytes]]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)  # lifespan and the unknown pass through
            return
        scan: _Scan | None = None
        try:
            scan = self._scan(scope["headers"], frozenset())
            if scan.connection is not None:
                named = frozenset(
                    n.encode() for n in connection_options(scan.connection.decode("latin-1"))
                )
                scan = self._scan(scope["headers"], named)
            self._check_framing(scan)
            path = self._path(scope)
            method = scope.get("method", "GET").upper() if kind == "http" else "GET"
            compiled = self.engine.rules.match(method, path)
            client = scope.get("client")
            decision = await self.engine.decide_async(
                compiled,
                path,
                scan.token,
                client[0] if client else None,
                scan.forwarded_for,
                method == "OPTIONS" and scan.preflight_method and scan.origin,
            )
        except LicenseChainError as exc:
            client = scope.get("client")
            client_ip = self.engine.client_ip(
                client[0] if client else None, scan.forwarded_for if scan is not None else None
            )
            decision = self.engine.refused(exc, None, None, None, client_ip)
        scope[DECISION_KEY] = decision
        scope[CLAIMS_KEY] = decision.claims
        if self.on_decision is not None:
            self._report(decision)
        if not decision.allowed or scan is None:
            rid = request_id(scan.request_id if scan is not None else None)
            if kind == "http":
                await self._refuse_http(scope, send, decision, rid)
            else:
                await self._refuse_websocket(scope, receive, send, decision, rid)
            return
        await self.app(self._forwarded_scope(scope, scan, decision), receive, send)

    # -- steps ---------------------------------------------------------------

    def _scan(self, raw_headers: Any, named: frozenset[bytes]) -> _Scan:
        """One pass: drop hop-by-hop, Connection-named and identity headers, read the rest."""
        scan = _Scan()
        keep = scan.headers.append
        size = 0
        strip = self._strip
        sources = self._sources
        for name, value in raw_headers:
            key = name.lower()
            if key != b"authorization" and key != b"x-license-token":
                # token headers are capped by the verifier instead (401, not 431)
                size += len(name) + len(value)
            if b"_" in key:
                key = key.replace(b"_", b"-")
                if key in _UNDERSCORE_DROP or key in named:
                    continue
            if key in _REMOVED or key in named:
                if key == b"connection" and scan.connection is None:
                    scan.connection = value
                elif key == b"transfer-encoding":
                    scan.transfer_encoding = True
                continue
            if key == b"authorization" and "bearer" in sources:
                token = bearer_token(value.decode("latin-1"))
                if token is not None:
                    if scan.bearer is None:
                        scan.bearer = token
                    if strip:
                        continue
            elif key == b"x-license-token" and "x-license-token" in sources:
                if scan.x_token is None:
                    scan.x_token = value.decode("latin-1").strip()
                if strip:
                    continue
            elif key == b"cookie" and "cookie" in sources and self._cookie_b in value:
                text = value.decode("latin-1")
                if scan.cookie is None:
                    scan.cookie = cookie_value(text, self._cookie) or None
                if strip:
                    rest = without_cookie(text, self._cookie)
                    if rest:
                        keep((name, rest.encode("latin-1")))
                    continue
            elif key == b"x-forwarded-for":
                # several lines are one list, in order (RFC 9110 5.3): the rightmost hop counts
                hops = value.decode("latin-1")
                previous = scan.forwarded_for
                scan.forwarded_for = hops if previous is None else previous + ", " + hops
            elif key == b"content-length":
                if scan.content_length is not None and scan.content_length != value:
                    raise BadFraming("two different Content-Length values")
                scan.content_length = value
            elif key == self._request_id_name:
                scan.request_id = value.decode("latin-1")
            elif key == b"access-control-request-method":
                scan.preflight_method = True
            elif key == b"origin":
                scan.origin = True
            keep((name, value))
        scan.size = size
        if size > self._max_header_bytes:
            raise HeadersTooLarge(f"{size} bytes of headers")
        for source in sources:
            found = (
                scan.bearer
                if source == "bearer"
                else (scan.x_token if source == "x-license-token" else scan.cookie)
            )
            if found is not None:
                scan.token = found
                break
        return scan

    @staticmethod
    def _check_framing(scan: _Scan) -> None:
        if scan.content_length is not None:
            if scan.transfer_encoding:
                raise BadFraming("both Content-Length and Transfer-Encoding")
            if not scan.content_length.isdigit():
                raise BadFraming("Content-Length is not a number")

    @staticmethod
    def _path(scope: Scope) -> str:
        raw = scope.get("raw_path")
        if raw and b"%" in raw:
            check_raw_path(raw.split(b"?", 1)[0].decode("latin-1"))
        return normalise_path(scope.get("path", ""))

    def _forwarded_scope(self, scope: Scope, scan: _Scan, decision: Decision) -> Scope:
        headers = scan.headers
        claims = decision.claims
        if claims is not None:
            # cached like GateEngine.identity: a hit must be the very same claims object
            entry = self._identity_headers.get(claims.jti)
            if entry is not None and entry[0] is claims:
                identity = entry[1]
            else:
                if len(self._identity_headers) >= 10_000:
                    self._identity_headers.clear()
                values = self.engine.identity(claims)
                identity = [
                    (name, value.encode("latin-1"))
                    for name, value in zip(_IDENTITY_NAMES, values, strict=True)
                    if value is not None
                ]
                self._identity_headers[claims.jti] = (claims, identity)
            headers.extend(identity)
        forwarded = dict(scope)
        forwarded["headers"] = headers
        path = decision.path
        raw_path = scope.get("raw_path")
        # A raw path with escapes is re-encoded from the matched path, so both say the same.
        if path is not None and (path != scope.get("path") or (raw_path and b"%" in raw_path)):
            forwarded["path"] = path
            forwarded["raw_path"] = encode_path(path).encode("ascii")
        return forwarded

    async def _refuse_http(self, scope: Scope, send: Send, decision: Decision, rid: str) -> None:
        assert decision.error is not None
        status, headers, body = render(decision.error, rid, self.config.request_id_header)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
            }
        )
        head = scope.get("method") == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _refuse_websocket(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision, rid: str
    ) -> None:
        assert decision.error is not None
        message = await receive()
        if message.get("type") != "websocket.connect":
            return  # the client went away before the handshake
        if "websocket.http.response" in (scope.get("extensions") or {}):
            status, headers, body = render(decision.error, rid, self.config.request_id_header)
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        # 1008: policy violation; before accept the server turns it into an HTTP 403.
        await send({"type": "websocket.close", "code": 1008})

    def _report(self, decision: Decision) -> None:
        assert self.on_decision is not None
        try:
            self.on_decision(decision)
        except Exception:
            log.exception("on_decision hook failed")

    # -- operations ----------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        checks = self.engine.readiness()
        if self.engine.limiter is not None and self.engine.limiter.asynchronous:
            try:
                checks["ratelimit"] = await self.engine.limiter.ping_async()
            except Exception:
                checks["ratelimit"] = False
        return checks

    def close(self) -> None:
        self.engine.close()
