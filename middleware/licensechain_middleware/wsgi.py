"""``LicenseGate``: the license gate as WSGI middleware.

.. code-block:: python

    from licensechain_middleware import GateConfig, LicenseGate, Rule

    config = GateConfig(
        issuer="https://licenses.example.com/v1",
        audience="app_123",
        jwks_url="https://licenses.example.com/v1/licenses/jwks",
        rules=[Rule("/health", public=True), Rule("/reports/**", features=("export",))],
    )
    app.wsgi_app = LicenseGate(app.wsgi_app, config)

For each request, in this order:

1. Refuse ambiguous framing (``Content-Length`` with ``Transfer-Encoding``, or a
   ``Content-Length`` that is not a number) with 400, and header values larger
   than ``max_header_bytes`` in total with 431.
2. Remove hop-by-hop headers and every header named in ``Connection``.
3. Remove inbound identity headers. WSGI folds ``X-License-Subject`` and
   ``X_License_Subject`` into the one key ``HTTP_X_LICENSE_SUBJECT``, so removing
   the key removes both spellings.
4. Normalise ``PATH_INFO`` (see ``paths.py``) and find the first matching rule;
   the query string never takes part.
5. Read the token (``token_sources``, in order) and hand it to the core gate
   (``flask_licensechain.core.gate``): same-origin proof for a cookie token on an
   unsafe method, verification, features and plan; then count the rate limit.
6. Refused: answer the core gate's rendering of the error. Allowed: set the
   identity headers, strip the token unless ``strip_token=False``, forward the
   normalised path (``PATH_INFO`` and, when present, ``RAW_URI``/``REQUEST_URI``)
   and the request id (the client's sane ``X-Request-ID`` or a new one, in the
   header and in ``environ["licensechain.request_id"]``), and put the results in
   ``environ["licensechain.claims"]`` (the verified ``LicenseClaims`` or None) and
   ``environ["licensechain.result"]`` (a ``GateResult``).

The result is also written when the request is refused, so an outer
middleware (access log, metrics) can read it from the same environ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

from flask_licensechain.core.errors import LicenseChainError
from flask_licensechain.core.gate import (
    BEARER,
    COOKIE,
    CSRF_HEADER,
    check_same_origin,
    environ_request_id,
    is_cors_preflight,
    render_refusal,
    without_cookie,
)

from .config import GateConfig
from .engine import GateEngine, GateResult, SameOriginCheck
from .headers import REMOVED_ENVIRON, connection_options
from .identity import IDENTITY_ENVIRON_KEYS
from .paths import BadPath, check_raw_path, encode_path, normalise_path, raw_path_of
from .responses import BadFraming, HeadersTooLarge, status_line

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("licensechain.gate")

CLAIMS_KEY = "licensechain.claims"
RESULT_KEY = "licensechain.result"

ResultHook = Callable[[GateResult], None]

_SUBJECT, _APP, _PLAN, _FEATURES, _TOKEN_ID = IDENTITY_ENVIRON_KEYS
_PLAIN_CONNECTION = frozenset({"keep-alive", "close", "Keep-Alive", "Close"})
_CSRF_ENVIRON = "HTTP_" + CSRF_HEADER.upper().replace("-", "_")
#: Header fields WSGI keeps outside ``HTTP_*``; counted with their names like the others.
_UNPREFIXED = (("CONTENT_TYPE", len("content-type")), ("CONTENT_LENGTH", len("content-length")))


class LicenseGate:
    """WSGI middleware that lets a request reach ``app`` only as the rules allow.

    :param app: the WSGI application to protect.
    :param config: a validated ``GateConfig``.
    :param on_result: optional callable given every ``GateResult`` (metrics, logs);
        its exceptions are logged and ignored.
    """

    def __init__(
        self,
        app: WSGIApplication,
        config: GateConfig,
        *,
        on_result: ResultHook | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.engine = GateEngine(config)
        self.on_result = on_result
        self._reader = self.engine.reader
        self._cookie = config.token_cookie
        self._strip = config.strip_token
        self._max_header_bytes = config.max_header_bytes
        self._request_id_key = "HTTP_" + config.request_id_header.upper().replace("-", "_")
        self._match = self.engine.rules.match

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        upgrade = environ.get("HTTP_UPGRADE")  # hop-by-hop: removed by _prepare
        try:
            path = self._prepare(environ)
            method = environ.get("REQUEST_METHOD", "GET")
            if not method.isupper():
                method = method.upper()  # werkzeug and others upper-case it: so must rules
            compiled = self._match(method, path)
            cookies = environ.get("HTTP_COOKIE")
            authorization = environ.get("HTTP_AUTHORIZATION")
            token, source = self._reader.read(
                authorization, environ.get("HTTP_X_LICENSE_TOKEN"), cookies
            )
            result = self.engine.evaluate(
                compiled,
                path,
                token,
                environ.get("REMOTE_ADDR"),
                environ.get("HTTP_X_FORWARDED_FOR"),
                method == "OPTIONS"  # spares the look-ups on every other request
                and is_cors_preflight(
                    method,
                    environ.get("HTTP_ORIGIN"),
                    environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"),
                ),
                _same_origin(environ, method, cookies, upgrade) if source == COOKIE else None,
            )
        except LicenseChainError as exc:
            client_ip = self.engine.client_ip(
                environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR")
            )
            result = self.engine.refused(exc, None, None, None, client_ip)
        environ[RESULT_KEY] = result
        environ[CLAIMS_KEY] = result.claims
        if self.on_result is not None:
            self._report(result)
        if not result.allowed:
            return self._refuse(environ, result, start_response)
        self._forward(environ, result, source == BEARER)
        return self.app(environ, start_response)

    # -- steps ---------------------------------------------------------------

    def _prepare(self, environ: WSGIEnvironment) -> str:
        """Framing and size checks, header hygiene; returns the normalised path."""
        content_length = environ.get("CONTENT_LENGTH")
        if content_length:
            if "HTTP_TRANSFER_ENCODING" in environ:
                raise BadFraming("both Content-Length and Transfer-Encoding")
            if not content_length.isdigit():
                raise BadFraming("Content-Length is not a number")
        # name + value of each field, as the ASGI gate counts (an environ key is "HTTP_" + name)
        size = 0
        for key, value in environ.items():
            if key[0] == "H" and key[:5] == "HTTP_":
                size += len(key) - 5 + len(value)
        for key, name_length in _UNPREFIXED:
            value = environ.get(key)
            if value:
                size += name_length + len(value)
        if size > self._max_header_bytes:
            # Token headers are not counted: the verifier caps them (401, as the contract says).
            for key in ("HTTP_AUTHORIZATION", "HTTP_X_LICENSE_TOKEN"):
                if key in environ:
                    size -= len(key) - 5 + len(environ[key])
            if size > self._max_header_bytes:
                raise HeadersTooLarge(f"{size} bytes of header fields")
        connection = environ.get("HTTP_CONNECTION")
        # The usual values name no other header; only the rest need parsing.
        if connection is not None and connection not in _PLAIN_CONNECTION:
            for name in connection_options(connection):
                if name != "host":
                    environ.pop("HTTP_" + name.upper().replace("-", "_"), None)
        for key in REMOVED_ENVIRON:
            if key in environ:
                del environ[key]
        for key in IDENTITY_ENVIRON_KEYS:
            if key in environ:
                del environ[key]

        path_info: str = environ.get("PATH_INFO", "")
        # WSGI strings are bytes as latin-1; rules and claims speak UTF-8 text.
        text = path_info if path_info.isascii() else _utf8(path_info)
        path = normalise_path(text)
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw_uri and "%" in raw_uri:
            check_raw_path(raw_path_of(raw_uri))
        return path

    def _forward(self, environ: WSGIEnvironment, result: GateResult, bearer: bool) -> None:
        environ_request_id(environ, self._request_id_key)
        claims = result.claims
        if claims is not None:
            subject, app, plan, features, token_id = self.engine.identity(claims)
            environ[_SUBJECT] = subject
            if app is not None:
                environ[_APP] = app
            if plan is not None:
                environ[_PLAN] = plan
            environ[_FEATURES] = features
            environ[_TOKEN_ID] = token_id
        if self._strip:
            self._strip_token(environ, bearer)
        path = result.path
        path_info = environ.get("PATH_INFO", "")
        # An empty PATH_INFO (the app's root under a SCRIPT_NAME) is left as it came. A raw
        # target with escapes is re-encoded from the matched path, so both say the same.
        if path is not None and path_info and (path != path_info or self._escaped(environ)):
            self._rewrite_path(environ, path)

    def _strip_token(self, environ: WSGIEnvironment, bearer: bool) -> None:
        """Remove every configured carrier; ``bearer``: the token came from Authorization."""
        reader = self._reader
        authorization = environ.get("HTTP_AUTHORIZATION")
        if authorization is not None and (bearer or reader.is_token_authorization(authorization)):
            del environ["HTTP_AUTHORIZATION"]
        if reader.uses_x_header:
            environ.pop("HTTP_X_LICENSE_TOKEN", None)
        if reader.uses_cookie:
            cookies = environ.get("HTTP_COOKIE")
            if cookies and self._cookie in cookies:
                rest = without_cookie(cookies, self._cookie)
                if rest:
                    environ["HTTP_COOKIE"] = rest
                else:
                    del environ["HTTP_COOKIE"]

    @staticmethod
    def _escaped(environ: WSGIEnvironment) -> bool:
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        return raw_uri is not None and "%" in raw_uri

    @staticmethod
    def _rewrite_path(environ: WSGIEnvironment, path: str) -> None:
        """Forward the path that was matched, in ``PATH_INFO`` and the raw request-target."""
        environ["PATH_INFO"] = path if path.isascii() else path.encode().decode("latin-1")
        query = environ.get("QUERY_STRING")
        script = quote(environ.get("SCRIPT_NAME", "").encode("latin-1"), safe="/")
        target = script + encode_path(path) + ("?" + query if query else "")
        for key in ("RAW_URI", "REQUEST_URI"):
            if key in environ:
                environ[key] = target

    def _refuse(
        self, environ: WSGIEnvironment, result: GateResult, start_response: StartResponse
    ) -> Iterable[bytes]:
        assert result.error is not None
        rid = environ_request_id(environ, self._request_id_key)
        refusal = render_refusal(result.error, rid, self.config.request_id_header)
        start_response(status_line(refusal.status), refusal.headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [refusal.body]

    def _report(self, result: GateResult) -> None:
        assert self.on_result is not None
        try:
            self.on_result(result)
        except Exception:
            log.exception("on_result hook failed")

    # -- operations ----------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        """Each dependency and whether it can serve now (for a readiness endpoint)."""
        return self.engine.readiness()

    def close(self) -> None:
        self.engine.close()


def _same_origin(
    environ: WSGIEnvironment, method: str, cookies: str | None, upgrade: str | None
) -> SameOriginCheck:
    def check() -> None:
        check_same_origin(
            method,
            host=environ.get("HTTP_HOST"),
            origin=environ.get("HTTP_ORIGIN"),
            sec_fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
            csrf_header=environ.get(_CSRF_ENVIRON),
            cookies=cookies,
            upgrade=upgrade,
        )

    return check


def _utf8(latin1: str) -> str:
    try:
        return latin1.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BadPath("path is not UTF-8") from None
