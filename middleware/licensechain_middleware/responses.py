"""Refusals rendered as the contract's JSON body and RFC 6750 challenge.

The body is ``{"error", "message", "request_id"}`` from the core error's
``body()``; its ``headers()`` add ``WWW-Authenticate`` (401/403), ``Retry-After``
and ``X-RateLimit-*`` (429). The finer reason and detail stay in the log.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from http import HTTPStatus
from typing import Final

from flask_licensechain.core.errors import InvalidRequest, LicenseChainError

log = logging.getLogger("licensechain.gate")

_SANE_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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


def request_id(inbound: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane, otherwise a fresh one."""
    if inbound and _SANE_REQUEST_ID.match(inbound):
        return inbound
    return uuid.uuid4().hex


def render(
    error: LicenseChainError, rid: str, request_id_header: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a refusal."""
    body = json.dumps(error.body(rid), separators=(",", ":")).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        (request_id_header, rid),
    ]
    headers.extend(error.headers().items())
    log.info(
        "license gate refused: status=%s reason=%s detail=%s request_id=%s",
        error.status_code, error.reason, error.detail, rid,
    )  # fmt: skip
    return error.status_code, headers, body


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"
