"""Which headers cross the proxy, in each direction.

The gate (``LicenseGate``) already removes inbound hop-by-hop and spoofed
identity headers before the proxy sees a request. What is left here is the
proxy's own framing: it re-frames both bodies, so the client's framing headers
(``Host``, ``Content-Length``/``Transfer-Encoding``, ``Connection``...) are
replaced by its own on the upstream leg, and the upstream's hop-by-hop headers
are not passed back to the client (RFC 9110 section 7.6.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..headers import FORWARDING

#: RFC 9110 7.6.1 connection-specific fields, plus the de-facto ones proxies drop.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: Set by the proxy itself on the upstream leg, never copied from the client. ``Expect``
#: was answered by the server in front of us already; the body is on its way regardless.
_PROXY_OWNED: Final = HOP_BY_HOP | {"host", "content-length", "expect"}

#: WebSocket handshake fields the upstream client library writes itself.
WEBSOCKET_HANDSHAKE: Final = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)


def _connection_tokens(values: Iterable[str]) -> set[str]:
    """Header names listed in ``Connection`` values: they are hop-by-hop too."""
    return {token.strip().lower() for value in values for token in value.split(",")}


def request_headers_from_environ(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The client's end-to-end request headers, from a WSGI environ."""
    connection = environ.get("HTTP_CONNECTION")
    skip = _PROXY_OWNED | (_connection_tokens([connection]) if connection else set())
    headers: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
            if name not in skip:
                headers.append((name, value))
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        headers.append(("content-type", content_type))
    return headers


def request_headers_from_scope(
    raw_headers: Iterable[tuple[bytes, bytes]], *, extra_skip: frozenset[str] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """The client's end-to-end request headers, from an ASGI scope's header list."""
    pairs = list(raw_headers)
    connection = [v.decode("latin-1") for k, v in pairs if k.lower() == b"connection"]
    skip = _PROXY_OWNED | extra_skip | _connection_tokens(connection)
    return [(k, v) for k, v in pairs if k.decode("latin-1").lower() not in skip]


def response_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream response headers that go back to the client, repeats kept in order."""
    items = list(pairs)
    connection = [v for k, v in items if k.lower() == "connection"]
    skip = HOP_BY_HOP | _connection_tokens(connection)
    return [(k, v) for k, v in items if k.lower() not in skip]


_FORWARDED: Final = FORWARDING


def replace_forwarded(
    headers: list[tuple[str, str]], *, client: str | None, scheme: str, host: str | None
) -> list[tuple[str, str]]:
    """Drop the client's forwarding headers and state ours: what this hop saw.

    The gate decides which inbound ``X-Forwarded-For`` to believe (trusted proxy
    CIDRs); ``client`` is its answer, so the upstream gets one trustworthy value.
    """
    kept = [(k, v) for k, v in headers if k not in _FORWARDED]
    if client:
        kept.append(("x-forwarded-for", client))
    kept.append(("x-forwarded-proto", scheme))
    if host:
        kept.append(("x-forwarded-host", host))
    return kept


def replace_forwarded_raw(
    headers: list[tuple[bytes, bytes]], *, client: str | None, scheme: str, host: bytes | None
) -> list[tuple[bytes, bytes]]:
    """``replace_forwarded`` for an ASGI header list."""
    kept = [(k, v) for k, v in headers if k.decode("latin-1").lower() not in _FORWARDED]
    if client:
        kept.append((b"x-forwarded-for", client.encode("latin-1")))
    kept.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if host:
        kept.append((b"x-forwarded-host", host))
    return kept
