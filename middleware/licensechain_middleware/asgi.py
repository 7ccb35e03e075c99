"""``LicenseGateASGI``: the license gate as pure ASGI middleware (no framework needed).

.. code-block:: python

    app = LicenseGateASGI(app, GateConfig(...))

It follows the WSGI gate step by step (see ``wsgi.py``), with ASGI's forms:

* ``lifespan`` (and any other scope type) passes straight through.
* ``http`` and ``websocket`` scopes are gated; a WebSocket on its handshake. A
  refused handshake gets the JSON error as an HTTP response when the server
  offers the ``websocket.http.response`` extension, and otherwise a
  ``websocket.close`` before accept (the server answers 403).
* Header names are compared lower-cased. The ``_`` spelling of a header the gate
  or gateway manages (``X_Forwarded_For``, ``X_License_Subject``...; see
  ``headers.MANAGED``) is dropped, never read: a WSGI app behind would read it as
  the ``-`` spelling. Header fields count towards ``max_header_bytes`` as on the
  WSGI gate: name plus value, token headers left out.
* All per-request state lives inside ``__call__``. The app gets a copy of the
  scope with the cleaned headers (the request id included: the client's sane
  ``X-Request-ID`` or a new one, also in ``licensechain.request_id``), the
  normalised ``path`` and ``raw_path``, and ``licensechain.claims`` /
  ``licensechain.result``; those two keys are also written into the scope the
  gate received, for outer middleware.
* A token not seen before is verified in a worker thread, and a ``redis://``
  rate limit uses ``limits``' asyncio storage, so neither blocks the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from flask_licensechain.core.errors import LicenseChainError
from flask_licensechain.core.gate import (
    COOKIE,
    REQUEST_ID_ENVIRON,
    check_same_origin,
    is_cors_preflight,
    render_refusal,
    request_id,
    without_cookie,
)
from flask_licensechain.core.verifier import LicenseClaims

from .config import GateConfig
from .engine import GateEngine, GateResult, SameOriginCheck
from .headers import MANAGED, REMOVED, connection_options
from .identity import IDENTITY_HEADERS, IDENTITY_KEYS
from .paths import check_raw_path, encode_path, normalise_path
from .responses import BadFraming, HeadersTooLarge

log = logging.getLogger("licensechain.gate")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ResultHook = Callable[[GateResult], None]

CLAIMS_KEY: Final = "licensechain.claims"
RESULT_KEY: Final = "licensechain.result"

_HOP: Final = frozenset(h.encode() for h in REMOVED)
_IDENTITY: Final = frozenset(h.encode() for h in IDENTITY_KEYS)
_REMOVED: Final = _HOP | _IDENTITY
_MANAGED: Final = frozenset(h.encode() for h in MANAGED)
_IDENTITY_NAMES: Final = tuple(h.lower().encode() for h in IDENTITY_HEADERS)


class _Scan:
    """What one pass over the request headers found."""

    __slots__ = (
        "authorization",
        "connection",
        "content_length",
        "cookies",
        "csrf",
        "fetch_site",
        "forwarded_for",
        "headers",
        "host",
        "origin",
        "preflight_method",
        "request_id",
        "source",
        "token",
        "transfer_encoding",
        "x_token",
    )

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.token: str | None = None
        self.source: str | None = None
        self.authorization: str | None = None
        self.x_token: str | None = None
        self.cookies: str | None = None
        self.connection: bytes | None = None
        self.content_length: bytes | None = None
        self.transfer_encoding = False
        self.forwarded_for: str | None = None
        self.request_id: str | None = None
        self.preflight_method: str | None = None
        self.origin: str | None = None
        self.host: str | None = None
        self.fetch_site: str | None = None
        self.csrf: str | None = None


class LicenseGateASGI:
    """Pure ASGI middleware that lets a request reach ``app`` only as the rules allow.

    :param app: the ASGI application to protect.
    :param config: a validated ``GateConfig``.
    :param on_result: optional callable given every ``GateResult``; exceptions are logged.
    """

    def __init__(
        self, app: ASGIApp, config: GateConfig, *, on_result: ResultHook | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.engine = GateEngine(config, asynchronous=True)
        self.on_result = on_result
        self._reader = self.engine.reader
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
            result = await self.engine.evaluate_async(
                compiled,
                path,
                scan.token,
                client[0] if client else None,
                scan.forwarded_for,
                is_cors_preflight(method, scan.origin, scan.preflight_method),
                _same_origin(scan, method, kind) if scan.source == COOKIE else None,
            )
        except LicenseChainError as exc:
            client = scope.get("client")
            client_ip = self.engine.client_ip(
                client[0] if client else None, scan.forwarded_for if scan is not None else None
            )
            result = self.engine.refused(exc, None, None, None, client_ip)
        scope[RESULT_KEY] = result
        scope[CLAIMS_KEY] = result.claims
        if self.on_result is not None:
            self._report(result)
        rid = request_id(scan.request_id if scan is not None else None)
        if not result.allowed or scan is None:
            if kind == "http":
                await self._refuse_http(scope, send, result, rid)
            else:
                await self._refuse_websocket(scope, receive, send, result, rid)
            return
        await self.app(self._forwarded_scope(scope, scan, result, rid), receive, send)

    # -- steps ---------------------------------------------------------------

    def _scan(self, raw_headers: Any, named: frozenset[bytes]) -> _Scan:
        """One pass: drop hop-by-hop, Connection-named, identity and ``_``-spelled managed
        headers, read the rest."""
        scan = _Scan()
        keep = scan.headers.append
        size = 0
        strip = self._strip
        reader = self._reader
        for name, value in raw_headers:
            key = name.lower()
            if key != b"authorization" and key != b"x-license-token":
                # token headers are capped by the verifier instead (401, not 431)
                size += len(name) + len(value)
            if b"_" in key:
                # never read; dropped when a WSGI app would take it for a managed header
                dashed = key.replace(b"_", b"-")
                if dashed not in _MANAGED and dashed != self._request_id_name:
                    if key not in named:
                        keep((name, value))
                continue
            if key in _REMOVED or key in named:
                if key == b"connection" and scan.connection is None:
                    scan.connection = value
                elif key == b"transfer-encoding":
                    scan.transfer_encoding = True
                continue
            # Repeated lines are read as one value, joined as WSGI servers join them
            # (RFC 9110 5.3), so both gates judge the same text: never the first or last.
            if key == b"authorization":
                if reader.uses_bearer:
                    text = value.decode("latin-1")
                    scan.authorization = _fold(scan.authorization, text)
                    if strip and reader.is_token_authorization(text):
                        continue
            elif key == b"x-license-token":
                if reader.uses_x_header:
                    scan.x_token = _fold(scan.x_token, value.decode("latin-1"))
                    if strip:
                        continue
            elif key == b"cookie":
                if reader.uses_cookie:
                    text = value.decode("latin-1")
                    # HTTP/2 splits one Cookie into lines joined by "; " (RFC 9113 8.2.3)
                    scan.cookies = text if scan.cookies is None else scan.cookies + "; " + text
                    if strip and self._cookie_b in value:
                        rest = without_cookie(text, self._cookie)
                        if rest:
                            keep((name, rest.encode("latin-1")))
                        continue
            elif key == b"x-forwarded-for":
                # one list, in order: the rightmost hop counts
                scan.forwarded_for = _fold(scan.forwarded_for, value.decode("latin-1"), ", ")
            elif key == b"content-length":
                if scan.content_length is not None and scan.content_length != value:
                    raise BadFraming("two different Content-Length values")
                scan.content_length = value
            elif key == self._request_id_name:
                if scan.request_id is None:
                    scan.request_id = value.decode("latin-1")
                continue  # forwarded as the id the gate settles on
            elif key == b"access-control-request-method":
                scan.preflight_method = value.decode("latin-1")
            elif key == b"origin":
                scan.origin = _fold(scan.origin, value.decode("latin-1"))
            elif key == b"host":
                scan.host = _fold(scan.host, value.decode("latin-1"))
            elif key == b"sec-fetch-site":
                scan.fetch_site = _fold(scan.fetch_site, value.decode("latin-1"))
            elif key == b"x-csrf-token":
                scan.csrf = _fold(scan.csrf, value.decode("latin-1"))
            keep((name, value))
        if size > self._max_header_bytes:
            raise HeadersTooLarge(f"{size} bytes of header fields")
        scan.token, scan.source = reader.read(scan.authorization, scan.x_token, scan.cookies)
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

    def _forwarded_scope(self, scope: Scope, scan: _Scan, result: GateResult, rid: str) -> Scope:
        headers = scan.headers
        headers.append((self._request_id_name, rid.encode("latin-1")))
        claims = result.claims
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
        forwarded[REQUEST_ID_ENVIRON] = rid
        path = result.path
        raw_path = scope.get("raw_path")
        # A raw path with escapes is re-encoded from the matched path, so both say the same.
        if path is not None and (path != scope.get("path") or (raw_path and b"%" in raw_path)):
            forwarded["path"] = path
            forwarded["raw_path"] = encode_path(path).encode("ascii")
        return forwarded

    async def _refuse_http(self, scope: Scope, send: Send, result: GateResult, rid: str) -> None:
        assert result.error is not None
        refusal = render_refusal(result.error, rid, self.config.request_id_header)
        await send(
            {
                "type": "http.response.start",
                "status": refusal.status,
                "headers": _raw_headers(refusal.headers),
            }
        )
        head = scope.get("method") == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else refusal.body})

    async def _refuse_websocket(
        self, scope: Scope, receive: Receive, send: Send, result: GateResult, rid: str
    ) -> None:
        assert result.error is not None
        message = await receive()
        if message.get("type") != "websocket.connect":
            return  # the client went away before the handshake
        if "websocket.http.response" in (scope.get("extensions") or {}):
            refusal = render_refusal(result.error, rid, self.config.request_id_header)
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": refusal.status,
                    "headers": _raw_headers(refusal.headers),
                }
            )
            await send({"type": "websocket.http.response.body", "body": refusal.body})
            return
        # 1008: policy violation; before accept the server turns it into an HTTP 403.
        await send({"type": "websocket.close", "code": 1008})

    def _report(self, result: GateResult) -> None:
        assert self.on_result is not None
        try:
            self.on_result(result)
        except Exception:
            log.exception("on_result hook failed")

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


def _fold(previous: str | None, value: str, separator: str = ",") -> str:
    return value if previous is None else previous + separator + value


def _raw_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def _same_origin(scan: _Scan, method: str, kind: str) -> SameOriginCheck:
    def check() -> None:
        check_same_origin(
            method,
            host=scan.host,
            origin=scan.origin,
            sec_fetch_site=scan.fetch_site,
            csrf_header=scan.csrf,
            cookies=scan.cookies,
            upgrade="websocket" if kind == "websocket" else None,
        )

    return check
