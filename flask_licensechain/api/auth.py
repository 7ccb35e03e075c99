"""API-key authentication of the admin endpoints, and what an authenticated key may see.

``@requires(scope)`` authenticates ``Authorization: Bearer lc_live_...`` before the view:
401 (RFC 6750 challenge) when no usable key is presented, with ``error_description`` saying
``expired`` for an expired key; 403 ``insufficient_scope`` when the key lacks the scope
(``roles.grants``: ``*`` and implied scopes count). The scope is kept on the view
(``REQUIRED_SCOPE_ATTR``) so that tests can list what guards what.

Failed authentications are counted per client IP (``api/ratelimit.py``, ``AuthFailureLimit``);
once over ``LICENSECHAIN_API_KEY_FAILURE_LIMIT`` every request from that IP answers 429 with
``Retry-After``, a correct key included, and the first refusal of a window logs a WARNING
(request id and IP, never the key) and records a ``security.auth_failures`` change.

Visibility (the one home of tenancy): a key sees the apps of its environment (``lc_test_``
keys: test-mode apps; ``lc_live_`` keys: live ones) and, when it is limited to a set of apps,
only those. Everything else answers 404, exactly as an object that does not exist:
``check_app_visible``, ``visible_license``, ``app_filter`` (listings and counts, through
``AppScope.clause``), ``require_unrestricted`` (actions beyond any one app).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from flask import g, request

from ..client_ip import client_ip
from ..core.errors import InsufficientScope, NotFound, Unauthorized, bearer_challenge
from ..roles import ALL_SCOPES, grants
from ..state import IssuerState, get_issuer_state
from ..store import Actor, ApiKeyRecord, Change, LicenseRecord
from ..store.api_keys import REFUSED_EXPIRED, REFUSED_ROTATED
from ..store.apps import AppScope
from ..store.changes import SYSTEM
from .http import request_id

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "ALL_SCOPES",
    "REQUIRED_SCOPE_ATTR",
    "ExpiredApiKey",
    "InvalidApiKey",
    "MissingApiKey",
    "app_filter",
    "authenticate",
    "check_app_visible",
    "current_api_key",
    "grants",
    "key_scope",
    "presented_key",
    "request_actor",
    "require_unrestricted",
    "requires",
    "visible_license",
]

log = logging.getLogger("licensechain.auth")

#: the attribute ``requires`` sets on a view: the scope that guards it
REQUIRED_SCOPE_ATTR: Final = "licensechain_scope"
_G_API_KEY: Final = "_licensechain_api_key"
_MAX_CREDENTIALS: Final = 512


class MissingApiKey(Unauthorized):
    """401: no ``Authorization`` header."""

    description = "An API key is required: Authorization: Bearer <api key>."


class InvalidApiKey(Unauthorized):
    """401 ``invalid_token``: another scheme, a malformed, unknown or revoked key, or a
    previous secret after its rotation's grace period."""

    description = "The API key is invalid or revoked."
    bearer_error = "invalid_token"


class ExpiredApiKey(InvalidApiKey):
    """401 ``invalid_token`` with ``error_description="expired"``: the key has expired."""

    description = "The API key has expired."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge(self.bearer_error, description="expired")}


class RotatedApiKey(InvalidApiKey):
    """401: a previous secret whose grace period after a rotation has ended."""

    description = "The API key was rotated; its grace period has ended."


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


def authenticate(state: IssuerState, scope: str) -> ApiKeyRecord:
    """The request's API key when it is valid and holds ``scope``; kept for ``current_api_key``.

    Raises ``LimitExceeded`` (429) while the client IP is over its failure limit,
    ``MissingApiKey``/``InvalidApiKey``/``ExpiredApiKey`` (401) or ``InsufficientScope``
    (403).
    """
    failures = state.limiter.auth_failures
    ip = client_ip()
    if failures is not None:
        failures.check(ip)
    now = datetime.now(UTC)
    try:
        key, refusal = state.store.api_keys.check(presented_key(), now)
    except MissingApiKey:
        raise
    except InvalidApiKey:
        key, refusal = None, "invalid"
    if key is None:
        if failures is not None and failures.fail(ip):
            _record_trip(state, ip, failures.describe())
        if failures is not None:
            failures.check(ip)  # this failure may have used the budget up: 429 at once
        if refusal == REFUSED_EXPIRED:
            raise ExpiredApiKey()
        if refusal == REFUSED_ROTATED:
            raise RotatedApiKey()
        raise InvalidApiKey()
    state.store.api_keys.usage.record(key.id, now, ip)
    if not grants(key.scopes, scope):
        raise InsufficientScope(f"This API key lacks the '{scope}' scope.")
    setattr(g, _G_API_KEY, key)
    return key


def _record_trip(state: IssuerState, ip: str, limit: str) -> None:
    """Once per window and IP: the WARNING line and the ``security.auth_failures`` change."""
    log.warning(
        "API key authentication failures over the limit (%s) from %s; request %s",
        limit,
        ip,
        request_id(),
    )
    try:
        with state.store.unit_of_work(SYSTEM) as unit:
            unit.record(
                Change(
                    action="security.auth_failures",
                    data={"limit": limit, "requestId": request_id()},
                    personal={"ip": ip},
                )
            )
    except Exception as exc:  # the 429 stands even when the store cannot record it
        log.warning("could not record security.auth_failures: %s", exc)


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


def key_scope(key: ApiKeyRecord | None = None) -> AppScope:
    """The apps ``key`` (default: the current key) may see: its environment's mode and its
    app restriction; rows tied to no app only for a key of every live app."""
    key = key or current_api_key()
    every_live_app = key.app_ids is None and key.environment == "live"
    return AppScope(mode=key.environment, app_ids=key.app_ids, unassigned=every_live_app)


def _app_visible(app_id: str) -> bool:
    mode = get_issuer_state().store.apps.mode_of(app_id)
    return key_scope().allows(app_id, mode)


def app_filter(requested: str | None) -> AppScope:
    """The apps a listing or a count must keep to: the current key's (``key_scope``), or
    only ``requested`` when given. ``NotFound`` when ``requested`` is not visible to the
    key, whether or not it exists. Pass the result as ``scope=`` to the store, or use
    ``.clause(column)`` on any column holding an app id."""
    scope = key_scope()
    if requested is None:
        return scope
    check_app_visible(requested)
    return AppScope(mode=scope.mode, app_ids=frozenset({requested}), unassigned=False)


def check_app_visible(app_id: str) -> None:
    """``NotFound`` ("App not found.") unless the app exists and the current key may see it."""
    if not _app_visible(app_id):
        raise NotFound("App not found.")


def visible_license(lic: LicenseRecord | None) -> LicenseRecord:
    """``lic`` when it exists and the current key may see its app, else ``NotFound``."""
    if lic is None or not _app_visible(lic.app_id):
        raise NotFound("License not found.")
    return lic


def require_unrestricted(action: str, *, every_environment: bool = True) -> None:
    """``InsufficientScope`` for a key that does not see every app: ``action`` reaches
    beyond the apps it may act on. An app-limited key is refused; an ``lc_test_`` key too,
    unless ``every_environment`` is false (``action`` stays in the key's environment)."""
    key = current_api_key()
    if key.app_ids is not None:
        raise InsufficientScope(f"An app-limited API key cannot {action}.")
    if every_environment and key.environment != "live":
        raise InsufficientScope(f"An lc_test_ API key cannot {action}.")


def requires(scope: str) -> Callable[[F], F]:
    """A view decorator: authenticate the API key and check ``scope`` before the view runs.

    Raises ``LimitExceeded`` (429), ``MissingApiKey`` or ``InvalidApiKey`` (401) and
    ``InsufficientScope`` (403). The scope is kept on the view as ``licensechain_scope``.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            authenticate(get_issuer_state(), scope)
            return view(*args, **kwargs)

        setattr(guarded, REQUIRED_SCOPE_ATTR, scope)
        return cast(F, guarded)

    return decorate
