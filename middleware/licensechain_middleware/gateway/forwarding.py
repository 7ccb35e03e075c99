"""Who the client is, as the gate resolved it, and the forwarding headers that say so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .headers import replace_forwarded_raw
from .outcome import RESULT_KEY


def client_address(env: Mapping[str, Any]) -> str | None:
    """The client IP: the gate's resolved answer when it left one, else the peer."""
    decision = env.get(RESULT_KEY)
    if decision is not None and decision.client_ip:
        return str(decision.client_ip)
    remote = env.get("REMOTE_ADDR")
    return remote if isinstance(remote, str) else None


def client_address_of_scope(scope: Mapping[str, Any]) -> str | None:
    decision = scope.get(RESULT_KEY)
    if decision is not None and decision.client_ip:
        return str(decision.client_ip)
    client = scope.get("client")
    return str(client[0]) if client else None


def forwarded_for_scope(
    headers: list[tuple[bytes, bytes]], scope: Mapping[str, Any]
) -> list[tuple[bytes, bytes]]:
    host = next((v for k, v in scope["headers"] if k.lower() == b"host"), None)
    scheme = scope.get("scheme", "http")
    return replace_forwarded_raw(
        headers,
        client=client_address_of_scope(scope),
        scheme={"ws": "http", "wss": "https"}.get(scheme, scheme),
        host=host,
    )
