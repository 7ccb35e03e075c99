"""The license gate, once: what every adapter translates its request into.

The Flask decorators (``flask_licensechain.decorators``), the WSGI and ASGI gates
and the gateway (``licensechain_middleware``) read their request into the calls
below and write back what they return. Nothing here knows a framework; the
inputs are header values (``str`` or ``None``), the outputs are claims, typed
errors and a rendered ``Refusal``.

What lives here, and only here:

* **token sources** -- ``bearer`` (``Authorization: Bearer``, RFC 6750 section
  2.1), ``x-license-token`` (the ``X-License-Token`` header) and ``cookie`` (one
  cookie, ``license_token`` by default), read in the configured order, each value
  trimmed one way, cookies parsed by one parser; ``TokenReader``;
* **cookie CSRF** -- an unsafe method (RFC 9110 section 9.2.1) or a WebSocket
  handshake authenticated by the cookie alone must prove it is same-origin (OWASP
  CSRF cheat sheet: ``Sec-Fetch-Site: same-origin``, or, without a ``Sec-Fetch-Site``
  saying otherwise, a same-origin ``Origin``, or a double-submit ``X-CSRF-Token``
  header equal to the ``license_csrf`` cookie);
* **the CORS preflight** (``is_cors_preflight``) that passes every gate unchecked;
* **the requirement** of a route (features, all or any; plans) and its check;
* ``authorize``: token -> verified claims that meet the requirement, or a typed error;
* **the reason class** a refused token is given (``missing``, ``malformed``,
  ``bad_signature``, ``unknown_key``, ``expired``, ``not_yet_valid``,
  ``wrong_audience``, ``wrong_issuer``, ``wrong_token_use``, ``revoked``);
* **the request id rule** (``request_id``): the client's ``X-Request-ID`` when it
  is 1-128 printable ASCII characters without spaces, else 32 fresh hex digits;
* **the rendering of a refusal** (``render_refusal``): status, the contract's JSON
  body, ``WWW-Authenticate`` with ``error_description`` (RFC 6750 section 3),
  ``Retry-After`` on 429 and 503, ``Cache-Control: no-store`` and the request id.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from random import getrandbits
from typing import Any, Final

from .errors import (
    ConfigError,
    InsufficientScope,
    LicenseChainError,
    Unauthorized,
    bearer_challenge,
)
from .verifier import Check, LicenseClaims, TokenVerifier

log = logging.getLogger("licensechain.gate")

# -- token sources -----------------------------------------------------------------

BEARER: Final = "bearer"
X_LICENSE_TOKEN: Final = "x-license-token"  # noqa: S105 - a source name
COOKIE: Final = "cookie"
#: Every source, in the order they are read.
TOKEN_SOURCES: Final = (BEARER, X_LICENSE_TOKEN, COOKIE)
DEFAULT_TOKEN_SOURCES: Final = (BEARER,)
DEFAULT_TOKEN_COOKIE: Final = "license_token"  # noqa: S105 - a cookie name
X_LICENSE_TOKEN_HEADER: Final = "X-License-Token"  # noqa: S105 - a header name
#: The double-submit pair for cookie-authenticated unsafe requests.
CSRF_COOKIE: Final = "license_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
#: Methods that change state (RFC 9110 section 9.2.1: everything not "safe").
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_COOKIE_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def check_token_sources(value: Any, key: str = "token_sources") -> tuple[str, ...]:
    """The validated, lower-cased source list; ``ConfigError`` naming ``key`` otherwise.

    Accepts a sequence of names or one comma-separated string.
    """
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise ConfigError(f"{key} must be a list of source names")
    sources = tuple(s.lower() for s in value)
    if not sources:
        raise ConfigError(f"{key} must name at least one source")
    for source in sources:
        if source not in TOKEN_SOURCES:
            raise ConfigError(f"{key}: {source!r} is not one of {', '.join(TOKEN_SOURCES)}")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"{key} lists a source twice")
    return sources


def check_cookie_name(value: Any, key: str = "token_cookie") -> str:
    if not isinstance(value, str) or not _COOKIE_NAME.match(value):
        raise ConfigError(f"{key} {value!r} is not a cookie name")
    return value


def bearer_token(authorization: str) -> str | None:
    """The credentials of an ``Authorization: Bearer`` value; None for another scheme.

    RFC 6750 section 2.1: ``Bearer`` 1*SP token. ``Bearer`` with nothing after it
    counts as a (malformed) token. Servers already trim the field value, so only the
    spaces after the scheme are dropped: a token with other stray bytes is malformed.
    """
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.lstrip(" ")


def cookie_value(cookie_header: str, name: str) -> str | None:
    """The value of the first cookie called ``name``, quotes removed; None when absent."""
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def without_cookie(cookie_header: str, name: str) -> str:
    """The ``Cookie`` value with every cookie called ``name`` removed."""
    kept = [
        part.strip()
        for part in cookie_header.split(";")
        if part.strip() and part.strip().partition("=")[0].strip() != name
    ]
    return "; ".join(kept)


class TokenReader:
    """Reads the token from the enabled sources, in the order they are configured.

    :param sources: the enabled sources, a subset of ``TOKEN_SOURCES`` (validated with
        ``check_token_sources``; ``ConfigError`` otherwise).
    :param cookie: the cookie name for the ``cookie`` source.
    """

    __slots__ = ("cookie", "sources", "uses_bearer", "uses_cookie", "uses_x_header")

    def __init__(self, sources: Iterable[str], cookie: str = DEFAULT_TOKEN_COOKIE) -> None:
        self.sources = check_token_sources(tuple(sources))
        self.cookie = check_cookie_name(cookie)
        self.uses_bearer = BEARER in self.sources
        self.uses_x_header = X_LICENSE_TOKEN in self.sources
        self.uses_cookie = COOKIE in self.sources

    def read(
        self, authorization: str | None, x_license_token: str | None, cookies: str | None
    ) -> tuple[str | None, str | None]:
        """``(token, source)`` from the three raw header values; ``(None, None)`` when absent.

        An ``Authorization`` header of another scheme (Basic, an API key) is not ours
        and is skipped; an empty ``X-License-Token`` or license cookie counts as absent.
        """
        for source in self.sources:
            if source == BEARER:
                if authorization:
                    token = bearer_token(authorization)
                    if token is not None:
                        return token, BEARER
            elif source == X_LICENSE_TOKEN:
                if x_license_token:
                    value = x_license_token.strip(" \t")
                    if value:
                        return value, X_LICENSE_TOKEN
            elif cookies and self.cookie in cookies:
                found = cookie_value(cookies, self.cookie)
                if found:
                    return found, COOKIE
        return None, None

    def is_token_authorization(self, authorization: str) -> bool:
        """Whether an ``Authorization`` value is a token this reader takes (to strip it)."""
        return self.uses_bearer and bearer_token(authorization) is not None


# -- cookie CSRF ---------------------------------------------------------------------


class CrossSiteRequest(LicenseChainError):
    """403: an unsafe request authenticated by the license cookie alone, not same-origin."""

    code = "insufficient_scope"
    status_code = 403
    description = (
        "A state-changing request authenticated by the license cookie must come from the "
        "same origin (Origin, Sec-Fetch-Site or the X-CSRF-Token header)."
    )

    def __init__(self, detail: str) -> None:
        super().__init__(reason="cross_site_request", detail=detail)


def check_same_origin(
    method: str,
    *,
    host: str | None,
    origin: str | None,
    sec_fetch_site: str | None,
    csrf_header: str | None,
    cookies: str | None,
    upgrade: str | None = None,
) -> None:
    """Raise ``CrossSiteRequest`` unless a cookie-authenticated request is safe or same-origin.

    Call it only when the token came from the cookie. Safe methods pass, except a
    WebSocket handshake (``upgrade`` names ``websocket``): browsers send cookies on a
    cross-site one and no CORS applies (cross-site WebSocket hijacking). The rest pass
    with ``Sec-Fetch-Site: same-origin``; or, unless ``Sec-Fetch-Site`` says otherwise
    (the browser compares schemes, which ``Host`` cannot tell), with an ``Origin`` whose
    host and port (a default port only for its own scheme) are the request's ``Host``;
    or with an ``X-CSRF-Token`` header equal to the ``license_csrf`` cookie (double
    submit; compared in constant time).
    """
    if method in SAFE_METHODS and (upgrade is None or "websocket" not in upgrade.lower()):
        return
    fetch_site = sec_fetch_site.strip().lower() if sec_fetch_site is not None else None
    if fetch_site == "same-origin":
        return
    if fetch_site is None and origin is not None and host:
        if _origin_host(origin) == _plain_host(host):
            return
    if csrf_header and cookies:
        expected = cookie_value(cookies, CSRF_COOKIE)
        if expected and hmac.compare_digest(expected.encode(), csrf_header.strip().encode()):
            return
    raise CrossSiteRequest(f"{method} with the cookie only; origin={str(origin)[:100]!r}")


_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


def _origin_host(origin: str) -> str | None:
    scheme, sep, rest = origin.strip().partition("://")
    scheme = scheme.lower()
    if not sep or not rest or "/" in rest or scheme not in _DEFAULT_PORTS:
        return None  # "null" and anything that is not http(s)://host[:port]
    rest = rest.lower()
    name, colon, port = rest.rpartition(":")
    # Only the scheme's own default port is implied: http://host:443 is another origin.
    return name if colon and "]" not in port and port == _DEFAULT_PORTS[scheme] else rest


def _plain_host(host: str) -> str:
    """``Host`` lower-cased, a default port (80, 443) dropped: it does not say the scheme."""
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    return name if sep and port in ("80", "443") else host


# -- CORS preflight ------------------------------------------------------------------------


def is_cors_preflight(
    method: str, origin: str | None, access_control_request_method: str | None
) -> bool:
    """Whether a request is a CORS preflight (Fetch standard, section 3.2.2): ``OPTIONS``
    with ``Origin`` and ``Access-Control-Request-Method``. Browsers never attach
    credentials to one, so every gate lets it through unchecked; any other ``OPTIONS``
    is gated like every method."""
    return method == "OPTIONS" and origin is not None and access_control_request_method is not None


# -- the requirement -------------------------------------------------------------------

#: The 403 message for a license without a required feature or plan, on every adapter.
FEATURE_MISSING_MESSAGE: Final = (
    "The license does not include the feature or plan this resource requires."
)


class FeatureMissing(InsufficientScope):
    """403: a valid license that lacks a required feature or plan."""

    description = FEATURE_MISSING_MESSAGE

    def __init__(self) -> None:
        super().__init__(reason="insufficient_scope")


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route requires of a license.

    ``features`` all together, or any one of them when ``any_feature``; ``plans`` the
    accepted plans (empty: any plan). The empty requirement accepts any valid license.
    """

    features: frozenset[str] = frozenset()
    any_feature: bool = False
    plans: frozenset[str] = frozenset()

    def is_met_by(self, claims: LicenseClaims) -> bool:
        if self.plans and claims.plan not in self.plans:
            return False
        if not self.features:
            return True
        if self.any_feature:
            return not self.features.isdisjoint(claims.features)
        return self.features <= claims.features

    def check(self, claims: LicenseClaims) -> None:
        """Raise ``FeatureMissing`` (403) unless ``claims`` meet the requirement."""
        if not self.is_met_by(claims):
            raise FeatureMissing()


ANY_LICENSE: Final = Requirement()


# -- authorize -------------------------------------------------------------------------


class MissingToken(Unauthorized):
    """401 with a bare challenge: no token in any enabled source (RFC 6750 section 3.1)."""

    description = "A license token is required."

    def __init__(self) -> None:
        super().__init__(reason="token_missing")


def authorize(
    verifier: TokenVerifier,
    token: str | None,
    requirement: Requirement = ANY_LICENSE,
    *,
    audience: str | frozenset[str] | None = None,
) -> LicenseClaims:
    """Verified claims that meet ``requirement``.

    :param audience: an app id (or a set, one of which) required in ``aud``, on top of
        the verifier's own.
    :raises MissingToken: ``token`` is None (401, bare challenge).
    :raises flask_licensechain.core.verifier.TokenRejected: the token is refused (401).
    :raises FeatureMissing: the license lacks a feature or plan (403).
    :raises flask_licensechain.core.errors.Unavailable: keys or denylist cannot answer (503).
    """
    if token is None:
        raise MissingToken()
    claims = verifier.verify(token, audience=audience)
    requirement.check(claims)
    return claims


async def authorize_async(
    verify: Callable[[str], Awaitable[LicenseClaims]],
    token: str | None,
    requirement: Requirement = ANY_LICENSE,
) -> LicenseClaims:
    """``authorize`` for an event loop: ``verify`` is the caller's awaitable verification
    (the ASGI gate runs a cold token's RSA work off the loop). Same errors."""
    if token is None:
        raise MissingToken()
    claims = await verify(token)
    requirement.check(claims)
    return claims


# -- why a token was refused ------------------------------------------------------------

MISSING: Final = "missing"
MALFORMED: Final = "malformed"
REVOKED: Final = "revoked"
EXPIRED: Final = "expired"
#: The reason classes a 401 from a gate gives, in the body and as ``error_description``.
REASON_CLASSES: Final = (
    MISSING,
    MALFORMED,
    "bad_signature",
    "unknown_key",
    EXPIRED,
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "wrong_token_use",
    REVOKED,
)
_CLASS_OF_CHECK: Final = {
    Check.TOO_LARGE: MALFORMED,
    Check.MALFORMED: MALFORMED,
    Check.ALG_NOT_ALLOWED: MALFORMED,
    Check.UNSUPPORTED_CRIT: MALFORMED,
    Check.BAD_KID: MALFORMED,
    Check.MISSING_CLAIM: MALFORMED,
    Check.BAD_CLAIM: MALFORMED,
    Check.UNKNOWN_KID: "unknown_key",
    Check.BAD_SIGNATURE: "bad_signature",
    Check.WRONG_TOKEN_USE: "wrong_token_use",
    Check.ISSUER_MISMATCH: "wrong_issuer",
    Check.AUDIENCE_MISMATCH: "wrong_audience",
    Check.EXPIRED: EXPIRED,
    Check.NOT_YET_VALID: "not_yet_valid",
    Check.REVOKED: REVOKED,
}
#: Live-status answers (authoritative mode) that refuse a well-formed token.
_CLASS_OF_REASON: Final = {
    "token_missing": MISSING,
    "token_expired": EXPIRED,
    "license_expired": EXPIRED,
}


def reason_class(error: LicenseChainError) -> str | None:
    """The reason class of a refused license token, or None for any other error."""
    if not isinstance(error, Unauthorized):
        return None
    check = getattr(error, "check", None)
    if check is not None:
        return _CLASS_OF_CHECK.get(check, MALFORMED)
    # A license the live status refuses (revoked, suspended, gone) voids its token.
    return _CLASS_OF_REASON.get(error.reason, REVOKED)


# -- the request id ---------------------------------------------------------------------

REQUEST_ID_HEADER: Final = "X-Request-ID"
#: Where a WSGI request keeps its id once chosen, so every layer uses the same one.
REQUEST_ID_ENVIRON: Final = "licensechain.request_id"
_SANE_REQUEST_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")


def request_id(inbound: str | None) -> str:
    """The client's id when sane (1-128 printable ASCII, no spaces), else 32 new hex digits.

    A request id correlates log lines; it is not a secret, so it comes from ``random``
    (reseeded in each forked worker), a third of the cost of ``secrets`` per request.
    """
    if inbound is not None and _SANE_REQUEST_ID.fullmatch(inbound):
        return inbound
    return f"{getrandbits(128):032x}"


def environ_request_id(environ: MutableMapping[str, Any], key: str = "HTTP_X_REQUEST_ID") -> str:
    """The id of a WSGI request: chosen once (``request_id``) and kept in the environ.

    It is also written back as the request's header, so an app behind a gate echoes it.
    """
    rid: str | None = environ.get(REQUEST_ID_ENVIRON)
    if rid is None:
        rid = environ[REQUEST_ID_ENVIRON] = request_id(environ.get(key))
        environ[key] = rid
    return rid


# -- the refusal ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """A rendered refusal: status code, header list (names as written) and JSON body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def render_error(
    error: LicenseChainError, rid: str | None, request_id_header: str = REQUEST_ID_HEADER
) -> Refusal:
    """Status, headers and JSON body of any contract error.

    A refused license token adds ``reason`` to the body and, when a token was sent,
    ``error_description`` to the challenge; nothing else about the token or the keys
    is disclosed.
    """
    data = error.body(rid)
    extra = error.headers()
    why = reason_class(error)
    if why is not None:
        data["reason"] = why
        bearer_error = getattr(error, "bearer_error", None)
        if bearer_error is not None:  # RFC 6750 3.1: a bare challenge when nothing was sent
            extra["WWW-Authenticate"] = bearer_challenge(bearer_error, description=why)
    body = json.dumps(data, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    if rid:
        headers.append((request_id_header, rid))
    headers.extend(extra.items())
    return Refusal(error.status_code, headers, body)


def render_refusal(
    error: LicenseChainError, rid: str, request_id_header: str = REQUEST_ID_HEADER
) -> Refusal:
    """``render_error`` for a gate's refusal, logged at INFO on ``licensechain.gate``
    with the finer reason and detail (which never reach the client)."""
    refusal = render_error(error, rid, request_id_header)
    log.info(
        "license gate refused: status=%s reason=%s class=%s detail=%s request_id=%s",
        error.status_code, error.reason, reason_class(error), error.detail, rid,
    )  # fmt: skip
    return refusal
