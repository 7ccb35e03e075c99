"""The middleware's own refusals of a request before the gate looks at the token.

Every refusal is rendered by the core gate (``flask_licensechain.core.gate``), the
same way on every adapter; this module only adds the framing errors only a proxy
or middleware meets, and the WSGI status line.
"""

from __future__ import annotations

from http import HTTPStatus

from flask_licensechain.core.errors import InvalidRequest


class HeadersTooLarge(InvalidRequest):
    """The request's header fields are too large (RFC 6585 431)."""

    status_code = 431
    description = "The request headers are too large."

    def __init__(self, detail: str) -> None:
        super().__init__(reason="headers_too_large", detail=detail)


class BadFraming(InvalidRequest):
    """Ambiguous message framing (request smuggling): refused, never guessed."""

    description = "The request framing is ambiguous."

    def __init__(self, detail: str) -> None:
        super().__init__(reason="bad_framing", detail=detail)


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"
