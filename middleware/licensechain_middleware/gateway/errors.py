"""Upstream failures, as contract errors: nothing internal reaches the client."""

from __future__ import annotations

import json

from flask_licensechain.core.errors import InvalidRequest, LicenseChainError


class BadTarget(InvalidRequest):
    """A request target that cannot be forwarded (a character or length httpx refuses)."""

    description = "The request target cannot be forwarded."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(reason="bad_target", detail=detail)


class BadGateway(LicenseChainError):
    """The upstream could not be reached or broke the protocol."""

    code = "bad_gateway"
    status_code = 502
    description = "The upstream service is unavailable."


class GatewayTimeout(LicenseChainError):
    """The upstream did not answer in time."""

    code = "gateway_timeout"
    status_code = 504
    description = "The upstream service did not answer in time."


def error_body(error: LicenseChainError, request_id: str | None) -> bytes:
    return json.dumps(error.body(request_id), separators=(",", ":")).encode()


def error_headers(error: LicenseChainError, body: bytes) -> list[tuple[str, str]]:
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    headers.extend(error.headers().items())
    return headers
