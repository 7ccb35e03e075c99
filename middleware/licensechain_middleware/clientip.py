"""The client IP for rate limiting: the peer, or ``X-Forwarded-For`` from trusted proxies only.

Nothing is trusted by default. When the peer is inside a configured proxy CIDR,
``X-Forwarded-For`` is read from the right, skipping every trusted hop; the first
address that is not a trusted proxy is the client (a client can prepend any
address it likes, so the leftmost entry is never believed on its own).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Characters of X-Forwarded-For looked at, from the right: the hops that matter are the
#: last ones (appended by the trusted proxies), whatever a client writes before them.
MAX_FORWARDED_FOR = 2048


class ClientAddress:
    """Resolves the client address under one list of trusted proxy networks."""

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies
        )
        # Per-address answers are cached: the same few peers ask again and again.
        self.is_trusted = lru_cache(maxsize=4096)(self._is_trusted)

    @property
    def trusts_anyone(self) -> bool:
        return bool(self._networks)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not self._networks or not forwarded_for or not self.is_trusted(peer):
            return peer
        if len(forwarded_for) > MAX_FORWARDED_FOR:
            # keep the tail, without the hop the cut may have split
            forwarded_for = forwarded_for[-MAX_FORWARDED_FOR:].partition(",")[2]
        hops = [h.strip() for h in forwarded_for.split(",")]
        for hop in reversed(hops):
            if not hop:
                continue
            if not self.is_trusted(hop):
                return hop if _is_address(hop) else peer
        return hops[0] if hops[0] and _is_address(hops[0]) else peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
