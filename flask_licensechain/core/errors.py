"""Typed errors shared by the server, the Flask gate and the middleware.

Each error carries the contract's ``code`` (the ``error`` member of the JSON
body), the HTTP status, and a generic ``description`` safe to show a client.
``reason`` is the finer machine reason (``token_expired``, ``token_revoked``...)
and ``detail`` is for logs only: it never reaches a response body.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the setting and says why."""


class LicenseChainError(Exception):
    code: str = "internal_error"
    status_code: int = 500
    description: str = "Internal error."

    def __init__(
        self,
        description: str | None = None,
        *,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        if description is not None:
            self.description = description
        self.reason = reason or self.code
        self.detail = detail
        super().__init__(detail or self.description)

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"error": self.code, "message": self.description}
        if request_id:
            data["request_id"] = request_id
        return data

    def headers(self) -> dict[str, str]:
        return {}


class KeyMaterialError(LicenseChainError):
    """Key material is unusable: a signing key, an encryption key or a sealed secret."""

    code = "key_error"
    description = "Signing key material is invalid."


class InvalidRequest(LicenseChainError):
    code = "invalid_request"
    status_code = 400
    description = "The request is malformed."


class Unauthorized(LicenseChainError):
    """Missing or bad credentials (API key or license token)."""

    code = "unauthorized"
    status_code = 401
    description = "Valid credentials are required."
    #: RFC 6750 error code for the challenge; ``None`` when no credentials were sent.
    bearer_error: str | None = None

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge(self.bearer_error)}


class InvalidToken(Unauthorized):
    """A license token failed verification. ``reason`` says why (for logs/metrics)."""

    description = "The license token is invalid, expired or revoked."
    bearer_error = "invalid_token"

    def __init__(self, reason: str = "token_invalid", detail: str | None = None) -> None:
        super().__init__(reason=reason, detail=detail)


class InsufficientScope(LicenseChainError):
    code = "insufficient_scope"
    status_code = 403
    description = "The credentials do not grant access to this resource."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge("insufficient_scope")}


class NotFound(LicenseChainError):
    code = "not_found"
    status_code = 404
    description = "Not found."


class Conflict(LicenseChainError):
    code = "conflict"
    status_code = 409
    description = "The request conflicts with the current state."


class PayloadTooLarge(LicenseChainError):
    code = "payload_too_large"
    status_code = 413
    description = "The request body is too large."


class UnsupportedMediaType(LicenseChainError):
    code = "unsupported_media_type"
    status_code = 415
    description = "The request body must be application/json."


class RateLimited(LicenseChainError):
    code = "rate_limited"
    status_code = 429
    description = "Too many requests."

    def __init__(self, retry_after: int = 1, description: str | None = None) -> None:
        super().__init__(description)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(LicenseChainError):
    """A dependency needed for a safe answer (store, denylist, JWKS) is unreachable.

    Rendered with ``Retry-After`` (RFC 9110 section 10.2.3) of ``retry_after`` seconds.
    """

    code = "unavailable"
    status_code = 503
    description = "The service is temporarily unavailable."
    retry_after: int = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def bearer_challenge(error: str | None = None, *, description: str | None = None) -> str:
    """The RFC 6750 section 3 ``WWW-Authenticate`` value.

    ``error`` is the RFC 6750 code (None: no credentials were sent), ``description``
    the ``error_description`` attribute (a fixed token from our own vocabulary).
    """
    value = 'Bearer realm="licensechain"'
    if error is not None:
        value += f', error="{error}"'
    if description is not None:
        value += f', error_description="{description}"'
    return value
