"""Header names the gate removes or reads, and the helpers both adapters share.

Hop-by-hop headers are RFC 9110 section 7.6.1's list (``Connection``,
``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Transfer-Encoding``, ``Upgrade``)
plus RFC 2616's ``Trailer``, ``Proxy-Authenticate`` and ``Proxy-Authorization``,
and every header named in ``Connection``. A ``Connection`` option can never
remove ``Host``, ``Content-Length`` or ``Content-Type``: they frame the message.

Method-override headers (``X-HTTP-Method-Override`` and kin) are removed too: a
framework honouring one would run another method than the one the rules saw.

``MANAGED`` names every header the gate or the gateway reads, sets or replaces
(framing, hop-by-hop, forwarding, identity, token, request id, same-origin proof).
An underscore spelling of one of them (``X_Forwarded_For``) is dropped by the ASGI
gate: WSGI servers and frameworks read ``_`` as ``-``, so a ``_`` twin could
override the value the gate checked. (WSGI folds both spellings into one environ
key, so there removing the key removes both.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from .identity import IDENTITY_HEADERS

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
#: What this hop tells the next about the client; replaced, never passed on as sent.
FORWARDING: Final = frozenset(
    {
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
    }
)
#: Headers the gate reads for the token, the request id and same-origin proof.
READ_BY_GATE: Final = frozenset(
    {
        "authorization",
        "x-license-token",
        "cookie",
        "x-request-id",
        "origin",
        "sec-fetch-site",
        "x-csrf-token",
        "access-control-request-method",
    }
)
#: Every header the gate or the gateway manages (see the module doc); lower case, ``-``.
MANAGED: Final = (
    REMOVED
    | FORWARDING
    | READ_BY_GATE
    | frozenset({"host", "content-length", "content-type"})
    | frozenset(h.lower() for h in IDENTITY_HEADERS)
)

_TOKEN: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def connection_options(value: str) -> Iterator[str]:
    """The header names listed in a ``Connection`` value, lower case, framing ones left out."""
    for option in value.split(","):
        name = option.strip().lower()
        if name and name not in FRAMING and _TOKEN.match(name):
            yield name
