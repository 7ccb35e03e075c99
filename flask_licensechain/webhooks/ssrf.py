"""Which destinations a webhook may be sent to (server-side request forgery, OWASP SSRF
Prevention Cheat Sheet).

A destination is refused when its host is, or resolves to, an address that is not
globally routable (``ipaddress``'s ``is_global``, IANA special-purpose registries, RFC 6890):
loopback, private (RFC 1918, RFC 4193), link-local (RFC 3927, which holds the cloud metadata
address 169.254.169.254), carrier-grade NAT, unspecified, reserved, documentation ranges,
and multicast. An IPv4-mapped IPv6 address is judged as its IPv4 address. Every address a
name resolves to must pass, and the connection then goes to a checked address, so a name
cannot resolve once for the check and again, elsewhere, for the connection. URLs must be
``https``.

The check runs when an endpoint is created or its URL changed, and again before each
connection (DNS can change). ``LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE = True`` lifts both
rules, for development and tests on one machine.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from ..core.errors import InvalidRequest
from ..store import validation

#: (host, port) -> the IP addresses it resolves to, as text
Resolver = Callable[[str, int], list[str]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED_MESSAGE: Final = (
    "The webhook URL is not allowed: it must be https and reach a public address "
    "(not loopback, private, link-local or a metadata address)."
)


class DestinationRefused(Exception):
    """The destination is not allowed; ``str()`` says why (never shown with secrets)."""


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (``socket.getaddrinfo``, TCP); tests replace it.

    Raises ``DestinationRefused`` when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise DestinationRefused(f"{host} does not resolve: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is globally routable unicast (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class DestinationPolicy:
    """The rules above; ``allow_private`` lifts them. ``resolver`` defaults to ``resolve``
    (looked up at each call, so that tests can stub it)."""

    allow_private: bool = False
    resolver: Resolver | None = None

    def check_url(self, url: str) -> str:
        """``url`` when it may be a webhook's destination (``InvalidRequest``, 400,
        otherwise), resolving its host now."""
        checked = validation.webhook_url(url, "url")
        assert checked is not None
        parts = urlsplit(checked)
        if parts.scheme != "https" and not self.allow_private:
            raise InvalidRequest(REFUSED_MESSAGE)
        try:
            self.addresses(parts.hostname or "", parts.port or _default_port(parts.scheme))
        except DestinationRefused as exc:
            raise InvalidRequest(REFUSED_MESSAGE, detail=str(exc)) from None
        return checked

    def check_scheme(self, scheme: str) -> None:
        """``DestinationRefused`` for a scheme other than https (unless allowed)."""
        if scheme != "https" and not (self.allow_private and scheme == "http"):
            raise DestinationRefused(f"scheme {scheme!r} is not allowed")

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host``; ``DestinationRefused`` when
        any of them (or the host itself, as a literal) is not allowed."""
        literal = _literal(host)
        if literal is not None:
            found = [literal]
        else:
            resolver = self.resolver or resolve
            found = []
            for text in resolver(host, port):
                parsed = _literal(text)
                if parsed is None:
                    raise DestinationRefused(f"{host} resolved to a non-address {text!r}")
                found.append(parsed)
            if not found:
                raise DestinationRefused(f"{host} does not resolve")
        if not self.allow_private:
            for address in found:
                if not is_public(address):
                    raise DestinationRefused(f"{host} is or resolves to {address}")
        return [str(address) for address in found]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
