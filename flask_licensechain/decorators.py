"""The in-app gate: ``@requires_feature``, ``@requires_any_feature``, ``@requires_license``.

A thin Flask adapter over the framework-free gate (``flask_licensechain.core.gate``):
it reads the token from the enabled sources (``LICENSECHAIN_TOKEN_SOURCES``), checks
cookie-authenticated unsafe requests for same-origin proof, calls ``authorize`` with
the app's one core ``TokenVerifier`` and the view's ``Requirement``, optionally asks
for the license's live status (``LICENSECHAIN_AUTHORITATIVE``), and renders a refusal
exactly as the middleware does. Inside the view, ``current_license`` is the verified
``LicenseClaims``.

Refusals (the contract's JSON body ``{"error","message","request_id"}``):

- 401 ``unauthorized`` with ``WWW-Authenticate: Bearer realm="licensechain"`` when no
  token was sent (RFC 6750 section 3.1), and with ``error="invalid_token"`` and an
  ``error_description`` when a token was sent but is refused; the body's ``reason``
  says why (``malformed``, ``expired``, ``wrong_audience``, ``revoked``...);
- 403 ``insufficient_scope`` when a valid license lacks a required feature or plan, or
  when an unsafe request authenticated by the cookie alone is not same-origin;
- 503 ``unavailable`` with ``Retry-After`` when revocation (or, in authoritative mode,
  the live status) cannot be checked: the gate fails closed.

Audience: ``audience=`` on the decorator, else ``LICENSECHAIN_AUDIENCE``. A gated view
that knows neither raises ``RuntimeError`` unless ``LICENSECHAIN_VERIFY_AUDIENCE`` is
false (integrator apps are refused at ``init_app`` already).

CORS preflight requests (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
carry no credentials, so they pass through to the view (or Flask's automatic ``OPTIONS``
answer) unchecked; any other ``OPTIONS`` is gated.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from flask import Request, Response, current_app, g, has_app_context, request
from werkzeug.local import LocalProxy

from .core.errors import LicenseChainError
from .core.gate import (
    COOKIE,
    CSRF_HEADER,
    REQUEST_ID_HEADER,
    Requirement,
    authorize,
    check_same_origin,
    environ_request_id,
    is_cors_preflight,
    render_refusal,
)
from .core.verifier import LicenseClaims
from .state import LicenseChainState, get_state

P = ParamSpec("P")
R = TypeVar("R")


class ViewDecorator(Protocol):
    """What ``@requires_feature(...)`` returns: it keeps the view's signature (sync or async)."""

    def __call__(self, view: Callable[P, R], /) -> Callable[P, R]: ...


#: One plan name or a set of accepted plan names.
PlanSpec = str | Iterable[str] | None
#: One app id or a set of accepted app ids.
AudienceSpec = str | Iterable[str] | None

_G_KEY = "_licensechain_license"
_CSRF_ENVIRON = "HTTP_" + CSRF_HEADER.upper().replace("-", "_")


def _feature_set(decorator: str, features: tuple[Any, ...]) -> frozenset[str]:
    if features and callable(features[0]):
        raise TypeError(f"@{decorator} needs feature names: write @{decorator}('export')")
    if not features:
        raise TypeError(f"@{decorator} needs at least one feature name")
    for feature in features:
        if not isinstance(feature, str) or not feature:
            raise TypeError(f"@{decorator}: feature names must be non-empty strings")
    return frozenset(features)


def _name_set(option: str, value: str | Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    names = frozenset((value,)) if isinstance(value, str) else frozenset(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"{option}= must be a non-empty name or a non-empty set of them")
    return names


# -- public decorators --------------------------------------------------------


def requires_feature(
    *features: str, plan: PlanSpec = None, audience: AudienceSpec = None
) -> ViewDecorator:
    """Require a valid license that has ALL of ``features`` (and one of ``plan``, if given).

    ``audience``: the app id(s) accepted in ``aud`` here (default ``LICENSECHAIN_AUDIENCE``).
    """
    features_ = _feature_set("requires_feature", features)
    return _gate(Requirement(features_, False, _name_set("plan", plan)), audience)


def requires_any_feature(
    *features: str, plan: PlanSpec = None, audience: AudienceSpec = None
) -> ViewDecorator:
    """Require a valid license that has AT LEAST ONE of ``features``."""
    features_ = _feature_set("requires_any_feature", features)
    return _gate(Requirement(features_, True, _name_set("plan", plan)), audience)


@overload
def requires_license(view: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def requires_license(*, plan: PlanSpec = None, audience: AudienceSpec = None) -> ViewDecorator: ...


def requires_license(
    view: Callable[P, R] | None = None,
    /,
    *,
    plan: PlanSpec = None,
    audience: AudienceSpec = None,
) -> Any:
    """Require any valid license; ``@requires_license`` or ``@requires_license(plan="pro")``."""
    decorator = _gate(Requirement(plans=_name_set("plan", plan)), audience)
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


def _gate(requirement: Requirement, audience: AudienceSpec) -> ViewDecorator:
    own_audience = _name_set("audience", audience) or None

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(view):
            _require_async_support(view)
            async_view = cast(Callable[P, Awaitable[Any]], view)

            @functools.wraps(view)
            async def async_gated(*args: P.args, **kwargs: P.kwargs) -> Any:
                denied = check_request(requirement, own_audience)
                if denied is not None:
                    return denied
                return await async_view(*args, **kwargs)

            return cast(Callable[P, R], async_gated)

        @functools.wraps(view)
        def gated(*args: P.args, **kwargs: P.kwargs) -> Any:
            denied = check_request(requirement, own_audience)
            if denied is not None:
                return denied
            return view(*args, **kwargs)

        return cast(Callable[P, R], gated)

    return decorator


def _require_async_support(view: Callable[..., Any]) -> None:
    """Flask runs ``async def`` views only with ``flask[async]`` (asgiref): say so now,
    at decoration, rather than with a 500 on every request."""
    if importlib.util.find_spec("asgiref") is None:
        raise RuntimeError(
            f"{view.__qualname__} is an async view: Flask runs those only with its async "
            "extra. pip install 'flask[async]'"
        )


def check_request(
    requirement: Requirement, audience: frozenset[str] | None = None
) -> Response | None:
    """Check the current request; None lets the view run, a response refuses it."""
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    environ = req.environ
    if is_cors_preflight(
        req.method, environ.get("HTTP_ORIGIN"), environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
    ):
        return None  # browsers never send credentials with it
    state = get_state()
    try:
        claims = authorize_request(req, state, requirement, audience)
    except LicenseChainError as exc:
        return _refusal(req, exc)
    setattr(g, _G_KEY, claims)
    return None


def authorize_request(
    req: Request,
    state: LicenseChainState,
    requirement: Requirement,
    audience: frozenset[str] | None = None,
) -> LicenseClaims:
    """Verified claims of ``req`` that meet ``requirement``, or raise the core error."""
    environ = req.environ  # read directly: this runs on every gated request
    cookies = environ.get("HTTP_COOKIE")
    token, source = state.token_reader.read(
        environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_LICENSE_TOKEN"), cookies
    )
    if source == COOKIE:
        check_same_origin(
            req.method,
            host=environ.get("HTTP_HOST"),
            origin=environ.get("HTTP_ORIGIN"),
            sec_fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
            csrf_header=environ.get(_CSRF_ENVIRON),
            cookies=cookies,
            upgrade=environ.get("HTTP_UPGRADE"),
        )
    claims = authorize(state.verifier, token, requirement, audience=_audience(state, audience))
    if state.live_status is not None and token is not None:
        state.live_status.check(token, claims)
    return claims


def _audience(state: LicenseChainState, own: frozenset[str] | None) -> frozenset[str] | None:
    audience = own or state.gate_audience
    if audience is None and state.settings.verify_audience:
        raise RuntimeError(
            "this gated view knows no audience: give @requires_feature(..., audience=...) "
            "or LICENSECHAIN_AUDIENCE, or set LICENSECHAIN_VERIFY_AUDIENCE = False on purpose"
        )
    return audience


def _refusal(req: Request, exc: LicenseChainError) -> Response:
    rid = environ_request_id(req.environ)  # the same id the API uses for this request
    refusal = render_refusal(exc, rid, REQUEST_ID_HEADER)
    response = current_app.response_class(refusal.body, status=refusal.status)
    response.headers.clear()
    response.headers.extend(refusal.headers)
    return response
