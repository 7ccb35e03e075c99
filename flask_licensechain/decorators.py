"""The in-app gate: ``@requires_feature``, ``@requires_any_feature``, ``@requires_license``.

Each decorator verifies the request's license token with the app's ONE core
``TokenVerifier`` (``app.extensions["licensechain"].verifier``), optionally asks the
server for the license's live status (``LICENSECHAIN_AUTHORITATIVE``), then checks the
view's feature and plan requirements. Inside the view, ``current_license`` is the
verified ``LicenseClaims``.

Failures are answered with the contract's JSON body ``{"error","message","request_id"}``
rendered from the core error (``.body()``/``.headers()``, the same rendering as the API
and the middleware):

- 401 ``unauthorized`` with ``WWW-Authenticate: Bearer realm="licensechain"`` when no
  token was sent (RFC 6750 section 3.1: no ``error`` attribute for a request without
  credentials), and with ``error="invalid_token"`` added when a token was sent but is
  malformed, badly signed, expired, for another app or issuer, or revoked;
- 403 ``insufficient_scope`` with ``error="insufficient_scope"`` when a valid license
  lacks a required feature or plan;
- 503 ``unavailable`` when revocation (or, in authoritative mode, the live status)
  cannot be checked: the gate fails closed.

CORS preflight requests (``OPTIONS``) carry no credentials, so they pass through to the
view (or Flask's automatic ``OPTIONS`` answer) unchecked.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from flask import Request, Response, g, has_app_context, jsonify, request
from werkzeug.local import LocalProxy

from .api.http import REQUEST_ID_HEADER, request_id
from .authoritative import live_status_checker
from .config import Settings
from .core.errors import InsufficientScope, LicenseChainError, Unauthorized
from .core.verifier import LicenseClaims
from .state import get_state

log = logging.getLogger("licensechain.gate")

P = ParamSpec("P")
R = TypeVar("R")


class ViewDecorator(Protocol):
    """What ``@requires_feature(...)`` returns: it keeps the view's signature (sync or async)."""

    def __call__(self, view: Callable[P, R], /) -> Callable[P, R]: ...


#: One plan name or a set of accepted plan names.
PlanSpec = str | Iterable[str] | None

X_LICENSE_TOKEN = "X-License-Token"  # noqa: S105 - a header name, not a secret
X_LICENSE_TOKEN_ENVIRON = "HTTP_X_LICENSE_TOKEN"  # noqa: S105 - its WSGI environ key
_G_KEY = "_licensechain_license"


class MissingToken(Unauthorized):
    """No license token in any enabled source: a bare challenge, no ``error`` attribute."""

    description = "A license token is required."

    def __init__(self) -> None:
        super().__init__(reason="token_missing")


# -- the requirement a view declares -----------------------------------------


@dataclass(frozen=True, slots=True)
class LicenseRequirement:
    """Features (all of them, or any one when ``any_of``) and accepted plans of one view."""

    features: frozenset[str] = frozenset()
    any_of: bool = False
    plans: frozenset[str] | None = None

    def is_met_by(self, claims: LicenseClaims) -> bool:
        if self.plans is not None and claims.plan not in self.plans:
            return False
        if self.any_of:
            return not self.features.isdisjoint(claims.features)
        return self.features <= claims.features


def _feature_set(decorator: str, features: tuple[Any, ...]) -> frozenset[str]:
    if features and callable(features[0]):
        raise TypeError(f"@{decorator} needs feature names: write @{decorator}('export')")
    if not features:
        raise TypeError(f"@{decorator} needs at least one feature name")
    for feature in features:
        if not isinstance(feature, str) or not feature:
            raise TypeError(f"@{decorator}: feature names must be non-empty strings")
    return frozenset(features)


def _plan_set(plan: PlanSpec) -> frozenset[str] | None:
    if plan is None:
        return None
    plans = frozenset((plan,)) if isinstance(plan, str) else frozenset(plan)
    if not plans or not all(isinstance(p, str) and p for p in plans):
        raise TypeError("plan= must be a non-empty plan name or a non-empty set of them")
    return plans


# -- public decorators --------------------------------------------------------


def requires_feature(*features: str, plan: PlanSpec = None) -> ViewDecorator:
    """Require a valid license that has ALL of ``features`` (and one of ``plan``, if given)."""
    return _gate(
        LicenseRequirement(_feature_set("requires_feature", features), False, _plan_set(plan))
    )


def requires_any_feature(*features: str, plan: PlanSpec = None) -> ViewDecorator:
    """Require a valid license that has AT LEAST ONE of ``features``."""
    requirement = LicenseRequirement(
        _feature_set("requires_any_feature", features), True, _plan_set(plan)
    )
    return _gate(requirement)


@overload
def requires_license(view: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def requires_license(*, plan: PlanSpec = None) -> ViewDecorator: ...


def requires_license(view: Callable[P, R] | None = None, /, *, plan: PlanSpec = None) -> Any:
    """Require any valid license; ``@requires_license`` or ``@requires_license(plan="pro")``."""
    decorator: ViewDecorator = _gate(LicenseRequirement(plans=_plan_set(plan)))
    if view is None:
        return decorator
    if not callable(view):
        raise TypeError("@requires_license takes the view, or keyword options only")
    return decorator(view)


# -- current_license ----------------------------------------------------------


def get_current_license() -> LicenseClaims | None:
    """The license verified for this request, or None (no gate ran, or outside a request)."""
    if not has_app_context():
        return None
    claims: LicenseClaims | None = g.get(_G_KEY)
    return claims


def _require_current_license() -> LicenseClaims:
    claims = get_current_license()
    if claims is None:
        raise RuntimeError(
            "current_license is only set inside a view protected by @requires_feature, "
            "@requires_any_feature or @requires_license."
        )
    return claims


#: The verified ``LicenseClaims`` of the current request (sub, aud, plan, features, jti, exp).
current_license: LicenseClaims = LocalProxy(_require_current_license)  # type: ignore[assignment]


# -- the gate -------------------------------------------------------------------


def _gate(requirement: LicenseRequirement) -> ViewDecorator:
    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(view):
            async_view = cast(Callable[P, Awaitable[Any]], view)

            @functools.wraps(view)
            async def async_gated(*args: P.args, **kwargs: P.kwargs) -> Any:
                denied = check_request(requirement)
                if denied is not None:
                    return denied
                return await async_view(*args, **kwargs)

            return cast(Callable[P, R], async_gated)

        @functools.wraps(view)
        def gated(*args: P.args, **kwargs: P.kwargs) -> Any:
            denied = check_request(requirement)
            if denied is not None:
                return denied
            return view(*args, **kwargs)

        return cast(Callable[P, R], gated)

    return decorator


def check_request(requirement: LicenseRequirement) -> Response | None:
    """Check the current request; None lets the view run, a response refuses it."""
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    if req.method == "OPTIONS":
        return None  # CORS preflight: browsers never send credentials with it
    try:
        claims = authorize(req, requirement)
    except LicenseChainError as exc:
        return _refusal(exc)
    setattr(g, _G_KEY, claims)
    return None


def authorize(req: Request, requirement: LicenseRequirement) -> LicenseClaims:
    """Verified claims that meet ``requirement``, or raise the core error that refuses."""
    state = get_state()
    token = extract_token(req, state.settings)
    if token is None:
        raise MissingToken()
    claims = state.verifier.verify(token, audience=state.settings.audience)
    if state.settings.authoritative:
        live_status_checker(state).check(token, claims)
    if not requirement.is_met_by(claims):
        raise InsufficientScope(
            "The license does not include the feature or plan this resource requires.",
            reason="insufficient_scope",
        )
    return claims


def extract_token(req: Request, settings: Settings) -> str | None:
    """The token from the enabled sources, in order: Bearer header, X-License-Token, cookie.

    An ``Authorization`` header with another scheme (Basic, an API key...) is not ours
    and is skipped. ``Bearer`` with an empty value counts as a (malformed) token, and the
    token is passed on exactly as sent: a token with stray whitespace is malformed.
    """
    environ = req.environ  # read directly: this runs on every gated request
    if settings.token_header:
        scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer":
            # RFC 6750: "Bearer" 1*SP token. Nothing else is trimmed: the HTTP server has
            # already dropped the field's surrounding whitespace, so what is left is the token.
            return str(value).lstrip(" ")
    if settings.token_x_header:
        x_token = environ.get(X_LICENSE_TOKEN_ENVIRON)
        if x_token is not None:
            return str(x_token)
    if settings.token_cookie:
        cookie = req.cookies.get(settings.token_cookie)
        if cookie:
            return cookie
    return None


def _refusal(exc: LicenseChainError) -> Response:
    rid = request_id()  # the same id the API uses for this request
    # The reason and detail are for operators; the client gets the generic description.
    log.info(
        "license gate refused %s %r: status=%s reason=%s detail=%s request_id=%s",
        request.method,
        request.path,
        exc.status_code,
        exc.reason,
        exc.detail,
        rid,
    )
    response = jsonify(exc.body(rid))
    response.status_code = exc.status_code
    response.headers.update(exc.headers())
    response.headers[REQUEST_ID_HEADER] = rid
    response.headers["Cache-Control"] = "no-store"
    return response
