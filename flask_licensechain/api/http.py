"""HTTP plumbing of the /v1 API: request ids, JSON responses and the contract's error bodies.

Every response of the blueprint carries ``X-Request-ID``; every error, whatever raised it
(our typed errors, Werkzeug, a dependency that is down), is rendered as
``{"error", "message", "request_id"}`` with the contract's status code.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import sqlalchemy.exc as sa_exc
from flask import Flask, Response, request
from limits.errors import StorageError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..core.errors import LicenseChainError, Unavailable, bearer_challenge
from ..core.gate import REQUEST_ID_HEADER, environ_request_id

log = logging.getLogger("licensechain.api")

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

#: where a rate-limited view leaves its X-RateLimit-* headers for the response
RATELIMIT_HEADERS_ENVIRON_KEY: Final = "licensechain.ratelimit_headers"
NO_STORE: Final = {"Cache-Control": "no-store"}

#: contract error codes of the HTTP statuses a Werkzeug exception may carry
_CODE_BY_STATUS: Final[Mapping[int, str]] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}

_MESSAGE_BY_STATUS: Final[Mapping[int, str]] = {
    400: "The request is malformed.",
    404: "Not found.",
    405: "The method is not allowed for this URL.",
    413: "The request body is too large.",
    415: "The request body must be application/json.",
}


def request_id() -> str:
    """The id of the current request, by the gates' one rule (``core/gate.py``): the
    client's ``X-Request-ID`` when sane, else a new one; chosen once per request."""
    return environ_request_id(request.environ)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``data`` as compact UTF-8 JSON with ``status`` and extra ``headers``."""
    # A ready header list: Werkzeug then skips its per-header lookups and merging.
    header_list = [("Content-Type", "application/json")]
    if headers:
        header_list.extend(headers.items())
    return Response(_encode(data), status=status, headers=header_list)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The contract's error body ``{error, message, request_id}`` with ``X-Request-ID``."""
    body = {"error": code, "message": message, "request_id": request_id()}
    response = json_response(body, status, headers)
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


def render_licensechain_error(exc: LicenseChainError) -> Response:
    """A typed core error as its status, code, description and headers (``detail`` is only
    logged)."""
    if exc.detail:
        log.info("%s (%s): %s", exc.code, exc.reason, exc.detail)
    return error_response(exc.status_code, exc.code, exc.description, exc.headers())


def render_http_exception(exc: HTTPException) -> Response:
    """A Werkzeug HTTP error (404, 405, 413...) as the contract's body; 405 keeps ``Allow``,
    401 gets the RFC 6750 ``WWW-Authenticate: Bearer`` challenge.
    """
    status = exc.code or 500
    code = _CODE_BY_STATUS.get(status) or _snake_case(exc.name)
    message = _MESSAGE_BY_STATUS.get(status) or exc.name + "."
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    if status == 401:
        headers["WWW-Authenticate"] = bearer_challenge()
    return error_response(status, code, message, headers)


def render_unexpected(exc: Exception) -> Response:
    """A dependency that is down is a 503; anything else is our bug: logged, a generic 500."""
    if is_dependency_failure(exc):
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return render_licensechain_error(Unavailable())
    log.exception("unhandled error in the LicenseChain API")
    return error_response(500, "internal_error", "Internal error.")


def is_dependency_failure(exc: BaseException) -> bool:
    """Connection-level failures of the database or Redis (not programming errors)."""
    return isinstance(exc, _dependency_errors())


@functools.cache
def _dependency_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
        StorageError,
        ConnectionError,
        TimeoutError,
    ]
    try:
        import redis.exceptions
    except ImportError:  # the redis extra is not installed
        pass
    else:
        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    return tuple(errors)


def finish_response(response: Response) -> Response:
    """Every API response: ``X-Request-ID``, the rate-limit headers, ``no-store`` unless
    the endpoint chose its own caching (API answers carry keys and tokens), and on every 503
    a ``Retry-After`` (RFC 9110 section 10.2.3), ``Unavailable.retry_after`` unless set."""
    headers = response.headers
    headers.set(REQUEST_ID_HEADER, request_id())
    if response.status_code == 503 and "Retry-After" not in headers:
        headers.set("Retry-After", str(Unavailable.retry_after))
    rate = request.environ.get(RATELIMIT_HEADERS_ENVIRON_KEY)
    if rate is not None:
        headers.extend(rate)  # views never set these themselves
    # A plain scan: Werkzeug's `in` raises and catches a KeyError for a missing header.
    if not any(name.lower() == "cache-control" for name, _ in headers):
        headers.add("Cache-Control", "no-store")
    return response


def contract_routing_error_hook(prefix: str) -> Callable[[], Response | None]:
    """A ``before_request`` hook answering 404/405 under ``prefix`` with the contract body.

    Flask records the routing error before it runs ``before_request`` hooks; the hook leaves
    other paths, and requests that matched a route, alone (it returns ``None``).
    """
    prefix = prefix.rstrip("/")

    def contract_routing_error() -> Response | None:
        exc = request.routing_exception
        if exc is None or not isinstance(exc, (NotFound, MethodNotAllowed)):
            return None
        path = request.path
        if path != prefix and not path.startswith(prefix + "/"):
            return None
        return render_http_exception(exc)

    return contract_routing_error


def install_json_errors(app: Flask) -> None:
    """Every HTTP error of the whole app (an unknown path, a wrong method, an error page)
    answers the contract's JSON body instead of Werkzeug's HTML page.

    The host app's own handlers keep precedence: a handler for a status code always wins
    over this catch-all (Flask looks code handlers up first), and a catch-all for
    ``HTTPException`` that the host registered before stays (one registered after replaces
    this one).
    """
    # Flask keeps these as nested defaultdicts: a lookup creates the (empty) entries.
    if HTTPException not in app.error_handler_spec[None][None]:
        app.register_error_handler(HTTPException, render_app_http_exception)


def render_app_http_exception(exc: HTTPException) -> Response:
    """An HTTP error outside the API's views: the contract body, ``X-Request-ID``, no-store."""
    return finish_response(render_http_exception(exc))


def _snake_case(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "error"
