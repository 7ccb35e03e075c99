"""Header names the gate removes or reads, and the helpers both adapters share.

Hop-by-hop headers are RFC 9110 section 7.6.1's list (``Connection``,
``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Transfer-Encoding``, ``Upgrade``)
plus RFC 2616's ``Trailer``, ``Proxy-Authenticate`` and ``Proxy-Authorization``,
and every header named in ``Connection``. A ``Connection`` option can never
remove ``Host``, ``Content-Length`` or ``Content-Type``: they frame the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
#: Never removed because ``Connection`` names them.
FRAMING: Final = frozenset({"host", "content-length", "content-type"})
HOP_BY_HOP_ENVIRON: Final = tuple("HTTP_" + h.upper().replace("-", "_") for h in HOP_BY_HOP)

_TOKEN: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def connection_options(value: str) -> Iterator[str]:
    """The header names listed in a ``Connection`` value, lower case, framing ones left out."""
    for option in value.split(","):
        name = option.strip().lower()
        if name and name not in FRAMING and _TOKEN.match(name):
            yield name


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of cookie ``name`` (the first one), quotes removed; None when absent."""
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def without_cookie(cookie_header: str, name: str) -> str:
    """The ``Cookie`` value with every cookie called ``name`` removed."""
    kept = [
        part.strip()
        for part in cookie_header.split(";")
        if part.strip() and part.strip().partition("=")[0].strip() != name
    ]
    return "; ".join(kept)


def bearer_token(authorization: str) -> str | None:
    """The credentials of an ``Authorization: Bearer`` value; None for other schemes.

    ``Bearer`` with nothing after it counts as a (malformed) token, as on the Flask side.
    """
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()
