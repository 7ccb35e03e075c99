"""Header names the gate removes or reads, and the helpers both adapters share.

Hop-by-hop headers are RFC 9110 section 7.6.1's list (``Connection``,
``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Transfer-Encoding``, ``Upgrade``)
plus RFC 2616's ``Trailer``, ``Proxy-Authenticate`` and ``Proxy-Authorization``,
and every header named in ``Connection``. A ``Connection`` option can never
remove ``Host``, ``Content-Length`` or ``Content-Type``: they frame the message.

Method-override headers (``X-HTTP-Method-Override`` and kin) are removed too: a
framework honouring one would run another method than the one the rules saw.
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
#: Headers some frameworks read to change the method after the gate decided on it.
METHOD_OVERRIDE: Final = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
#: Removed from every request: hop-by-hop and method-override headers.
REMOVED: Final = HOP_BY_HOP | METHOD_OVERRIDE
REMOVED_ENVIRON: Final = tuple("HTTP_" + h.upper().replace("-", "_") for h in REMOVED)

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
    return value.lstrip(" ")  # the server already trimmed the field; the rest is the token
