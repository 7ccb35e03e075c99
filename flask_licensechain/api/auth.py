"""API-key authentication of the admin endpoints: ``Authorization: Bearer lc_live_...``.

401 (with the RFC 6750 challenge) when no usable key is presented, 403
``insufficient_scope`` when the key lacks the endpoint's scope. The store hashes the
presented key and compares in constant time; revoked keys do not authenticate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from flask import g, request

from ..client_ip import client_ip
from ..core.errors import InsufficientScope, NotFound, Unauthorized
from ..state import get_issuer_state
from ..store import Actor, ApiKeyRecord, ApiKeyRepository, LicenseRecord
from .http import request_id

F = TypeVar("F", bound=Callable[..., Any])

ALL_SCOPES: Final = "*"
_G_API_KEY: Final = "_licensechain_api_key"
_MAX_CREDENTIALS: Final = 512


class MissingApiKey(Unauthorized):
    """401: no ``Authorization`` header."""

    description = "An API key is required: Authorization: Bearer <api key>."


class InvalidApiKey(Unauthorized):
    """401 ``invalid_token``: another scheme, a malformed, unknown or revoked key."""

    description = "The API key is invalid or revoked."
    bearer_error = "invalid_token"


def grants(key: ApiKeyRecord, scope: str) -> bool:
    """Whether ``key`` holds ``scope`` (or ``*``, every scope)."""
    return ALL_SCOPES in key.scopes or scope in key.scopes


def presented_key() -> str:
    """The API key of the request's ``Authorization: Bearer`` header (RFC 6750).

    Raises ``MissingApiKey`` without the header, ``InvalidApiKey`` for another scheme, an
    empty value or one over 512 characters.
    """
    header = request.headers.get("Authorization")
    if not header:
        raise MissingApiKey()
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or len(credentials) > _MAX_CREDENTIALS:
        raise InvalidApiKey()
    return credentials


def authenticate(api_keys: ApiKeyRepository, scope: str) -> ApiKeyRecord:
    """The request's API key when it is valid and holds ``scope``; kept for ``current_api_key``.

    Raises ``MissingApiKey``/``InvalidApiKey`` (401) or ``InsufficientScope`` (403).
    """
    key = api_keys.authenticate(presented_key())
    if key is None:
        raise InvalidApiKey()
    if not grants(key, scope):
        raise InsufficientScope(f"This API key lacks the '{scope}' scope.")
    setattr(g, _G_API_KEY, key)
    return key


def current_api_key() -> ApiKeyRecord:
    """The key that ``requires`` authenticated for this request (``MissingApiKey`` if none)."""
    key: ApiKeyRecord | None = g.get(_G_API_KEY)
    if key is None:  # a view forgot its @requires(scope): fail closed
        raise MissingApiKey()
    return key


def request_actor() -> Actor:
    """The ``Actor`` of this request's changes: its API key, request id, client IP and user
    agent (``MissingApiKey`` when no key was authenticated)."""
    key = current_api_key()
    return Actor(
        kind="api_key",
        id=key.id,
        name=key.name,
        request_id=request_id(),
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent"),
    )


def app_filter(requested: str | None) -> str | None:
    """The app a listing or a count must keep to: ``requested`` for an unrestricted key, the
    key's own app for an app-limited key. ``NotFound`` when an app-limited key asks for
    another app (it cannot tell whether that app exists)."""
    own = current_api_key().app_id
    if own is None:
        return requested
    if requested is not None and requested != own:
        raise NotFound("App not found.")
    return own


def check_app_visible(app_id: str) -> None:
    """``NotFound`` when the current key is limited to another app."""
    own = current_api_key().app_id
    if own is not None and own != app_id:
        raise NotFound("App not found.")


def visible_license(lic: LicenseRecord | None) -> LicenseRecord:
    """``lic`` when it exists and the current key may see its app, else ``NotFound``."""
    if lic is None:
        raise NotFound("License not found.")
    own = current_api_key().app_id
    if own is not None and own != lic.app_id:
        raise NotFound("License not found.")
    return lic


def require_unrestricted(action: str) -> None:
    """``InsufficientScope`` for an app-limited key: ``action`` reaches beyond one app."""
    if current_api_key().app_id is not None:
        raise InsufficientScope(f"An app-limited API key cannot {action}.")


def requires(scope: str) -> Callable[[F], F]:
    """A view decorator: authenticate the API key and check ``scope`` before the view runs.

    Raises ``MissingApiKey`` or ``InvalidApiKey`` (401) and ``InsufficientScope`` (403).
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            authenticate(get_issuer_state().store.api_keys, scope)
            return view(*args, **kwargs)

        return cast(F, guarded)

    return decorate
