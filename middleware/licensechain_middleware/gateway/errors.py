"""Upstream failures, as contract errors: nothing internal reaches the client."""

from __future__ import annotations

from flask_licensechain.core.errors import InvalidRequest, LicenseChainError
from flask_licensechain.core.gate import render_error


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
    return render_error(error, request_id).body


def error_headers(error: LicenseChainError, body: bytes) -> list[tuple[str, str]]:
    """The headers of ``error_body``'s answer (the front adds the request id)."""
    headers = render_error(error, None).headers
    return [(k, str(len(body)) if k == "Content-Length" else v) for k, v in headers]
