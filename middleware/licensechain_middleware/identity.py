"""The identity headers the gate sets, and the inbound names it removes first.

The values come from verified claims only. Each is made safe for a header line:
printable ASCII passes as is, anything else is percent-encoded (UTF-8), and a
``,`` inside one feature name is encoded so the comma-separated list stays exact.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Final
from urllib.parse import quote

from flask_licensechain.core.verifier import LicenseClaims

SUBJECT: Final = "X-License-Subject"
APP: Final = "X-License-App"
PLAN: Final = "X-License-Plan"
FEATURES: Final = "X-License-Features"
TOKEN_ID: Final = "X-License-Token-Id"  # noqa: S105 - a header name

#: In the order of ``IdentityValues``.
IDENTITY_HEADERS: Final = (SUBJECT, APP, PLAN, FEATURES, TOKEN_ID)
#: Lower-case names with ``-`` (the ASGI comparison form).
IDENTITY_KEYS: Final = frozenset(h.lower() for h in IDENTITY_HEADERS)
#: WSGI environ keys; one key covers the ``-`` and the ``_`` spelling of a header.
IDENTITY_ENVIRON_KEYS: Final = tuple(
    "HTTP_" + h.upper().replace("-", "_") for h in IDENTITY_HEADERS
)

#: subject, app, plan (None when the license has none), features, token id
IdentityValues = tuple[str, str | None, str | None, str, str]

_SAFE: Final = "!#$&'()*+-./:;<=>?@[]^_`{|}~ "


def identity_values(claims: LicenseClaims, audience: Set[str]) -> IdentityValues:
    app = next((a for a in claims.aud if a in audience), None) or claims.app_id
    return (
        header_safe(claims.sub),
        header_safe(app) if app is not None else None,
        header_safe(claims.plan) if claims.plan is not None else None,
        ",".join(sorted(header_safe(f).replace(",", "%2C") for f in claims.features)),
        header_safe(claims.jti),
    )


def header_safe(value: str) -> str:
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe=_SAFE)
