"""The forward-auth endpoint: the license gate's decision for a request a proxy holds.

This module holds the protocol and the WSGI endpoint (gunicorn); ``authz_asgi.py`` is
the same endpoint for uvicorn. ``licensechain-gateway --mode authz`` serves either.

nginx (``auth_request``), Caddy (``forward_auth``), Traefik (``forwardAuth``) and
Envoy (``ext_authz``, HTTP service) ask an external service whether a request may
pass before they forward it. This endpoint answers with the very ``LicenseGate``
that guards in-process apps and the reverse-proxy gateway: it rebuilds the
original request (method, target, host, scheme, headers) as a WSGI environ, runs
it through the gate, and turns the outcome into the proxy's answer. No request
body is ever read; the proxy keeps it.

Each proxy has its own exact path, and each path reads only its own headers, so a
header a client adds under another proxy's name is never looked at:

* ``/_licensechain/authz/nginx`` (nginx ``auth_request``): the method in
  ``X-Original-Method``, the target in ``X-Original-URI``;
* ``/_licensechain/authz/forwarded`` (Traefik, Caddy): ``X-Forwarded-Method`` and
  ``X-Forwarded-Uri``;
* ``/_licensechain/authz/envoy/<original target>`` (Envoy, ``path_prefix``): the
  request's own method, and the target after the prefix.

The host is ``Host`` (nginx, Envoy) or ``X-Forwarded-Host`` (Traefik, Caddy); the
scheme is ``X-Forwarded-Proto`` (``http`` when absent). The original target is
taken raw (still percent-encoded), decoded once, and checked and normalised by
the gate exactly as a server's ``PATH_INFO`` would be.

Only peers inside the gate's ``trusted_proxies`` are answered; any other peer gets
403 (``forbidden``) whatever it asks, because these headers say what the request
is. ``X-Forwarded-For`` from those proxies gives the client address, as in the gate.

Answers:

* allowed: 200, empty body, the identity headers (``X-License-Subject``,
  ``X-License-App``, ``X-License-Plan``, ``X-License-Features``,
  ``X-License-Token-Id``; only those the license has) and ``X-Licensechain-Path``,
  the normalised path the rules matched (percent-encoded), for proxies that forward
  exactly that path;
* refused: the gate's answer (401, 403, 404, 429, 503, 400 or 431) with the contract's
  JSON body, ``WWW-Authenticate``, ``Retry-After`` and ``X-RateLimit-*``, plus
  ``X-Licensechain-Status``. nginx's ``auth_request`` passes on only 401 and 403 and
  turns any other status into 500, so on the nginx path every refusal other than 401
  is sent as 403, with the real status in ``X-Licensechain-Status`` and the body in
  ``X-Licensechain-Body`` (ASCII JSON) for the shipped ``error_page`` to answer with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes

from flask_licensechain.core.errors import InvalidRequest, LicenseChainError, NotFound
from flask_licensechain.core.gate import render_refusal, request_id

from ..config import GateConfig
from ..identity import IDENTITY_ENVIRON_KEYS, IDENTITY_HEADERS
from ..paths import BadPath, encode_path, raw_path_of
from ..responses import status_line
from ..wsgi import RESULT_KEY, LicenseGate
from .observe import record_of_environ

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

AUTHZ_PREFIX: Final = "/_licensechain/authz"
NGINX_PATH: Final = AUTHZ_PREFIX + "/nginx"
FORWARDED_PATH: Final = AUTHZ_PREFIX + "/forwarded"
ENVOY_PREFIX: Final = AUTHZ_PREFIX + "/envoy"

#: Response headers of the endpoint besides the identity headers.
PATH_HEADER: Final = "X-Licensechain-Path"
STATUS_HEADER: Final = "X-Licensechain-Status"
BODY_HEADER: Final = "X-Licensechain-Body"

#: The proxies' headers that describe the original request; never passed to the gate.
_PROTOCOL_KEYS: Final = (
    "HTTP_X_ORIGINAL_URI",
    "HTTP_X_ORIGINAL_METHOD",
    "HTTP_X_FORWARDED_METHOD",
    "HTTP_X_FORWARDED_URI",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PROTO",
)
_METHOD: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_SCHEMES: Final = frozenset({"http", "https"})
_IDENTITY: Final = tuple(zip(IDENTITY_ENVIRON_KEYS, IDENTITY_HEADERS, strict=True))
_EMPTY: Final = (b"",)


class UntrustedPeer(LicenseChainError):
    """The peer is not one of the configured proxies: its headers cannot be believed."""

    code = "forbidden"
    status_code = 403
    description = "Only the configured proxies may ask for authorization decisions."

    def __init__(self, peer: str | None) -> None:
        super().__init__(reason="untrusted_peer", detail=f"peer {peer!r} is not trusted")


class BadForwardRequest(InvalidRequest):
    """The proxy did not say what the original request was (a configuration fault)."""

    description = "The authorization request does not describe the original request."

    def __init__(self, detail: str) -> None:
        super().__init__(reason="bad_authz_request", detail=detail)


class Original:
    """The original request as one proxy describes it: method, raw target, host, scheme."""

    __slots__ = ("host", "method", "scheme", "target")

    def __init__(self, method: str, target: str, host: str | None, scheme: str) -> None:
        self.method = method
        self.target = target
        self.host = host
        self.scheme = scheme

    def split(self) -> tuple[bytes, str]:
        """The raw path (still percent-encoded, as bytes) and the raw query string."""
        target = self.target
        if "#" in target:
            raise BadPath("request target holds a '#'")
        raw_path = raw_path_of(target)
        if not raw_path.startswith("/"):
            raise BadPath("request target is not a path")
        return raw_path.encode("latin-1"), target.partition("?")[2]


#: Reads one request header by its lower-case name; None when absent.
HeaderGetter = Callable[[str], "str | None"]


def describe(path: str, method: str, raw_target: str | None, header: HeaderGetter) -> Original:
    """What the original request was, from the authorization request's exact ``path``.

    Raises ``NotFound`` for a path that is none of the three, and ``BadForwardRequest``
    (400) when the proxy's headers do not say what the request was.
    """
    if path == NGINX_PATH:
        return _from_headers(header, "x-original-method", "x-original-uri", "host")
    if path == FORWARDED_PATH:
        return _from_headers(header, "x-forwarded-method", "x-forwarded-uri", "x-forwarded-host")
    if path.startswith(ENVOY_PREFIX + "/"):
        if not raw_target or not raw_target.startswith(ENVOY_PREFIX + "/"):
            raise BadForwardRequest("no raw request target under the Envoy prefix")
        host = header("host")
        return Original(_method(method), raw_target[len(ENVOY_PREFIX) :], host, _scheme(header))
    raise NotFound(reason="no_authz_path", detail=f"no authorization path {path[:100]!r}")


def _from_headers(header: HeaderGetter, method: str, uri: str, host: str) -> Original:
    target = _required(header, uri)
    value = header(host)
    return Original(
        _method(_required(header, method)),
        target,
        value.strip() if value else None,
        _scheme(header),
    )


def _required(header: HeaderGetter, name: str) -> str:
    value = header(name)
    if not value:
        raise BadForwardRequest(f"the proxy sent no {name} header")
    return value.strip()


def _scheme(header: HeaderGetter) -> str:
    scheme = (header("x-forwarded-proto") or "http").strip().lower()
    if scheme not in _SCHEMES:
        raise BadForwardRequest(f"X-Forwarded-Proto {scheme[:20]!r} is not http or https")
    return scheme


def _method(text: str) -> str:
    if _METHOD.fullmatch(text) is None:
        raise BadForwardRequest(f"original method {text[:40]!r} is not an HTTP method")
    return text.upper()


def refusal_headers(
    status: int, headers: list[tuple[str, str]], body: bytes, nginx: bool
) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers a refusal is sent with (see the module doc for nginx)."""
    if not body:
        # The original was a HEAD, so the gate rendered no body: the answer has none.
        headers = [(k, "0" if k.lower() == "content-length" else v) for k, v in headers]
    headers.append((STATUS_HEADER, str(status)))
    if nginx:
        # auth_request drops the body, and passes on 401 and 403 only (anything else
        # becomes a 500): the shipped error_page answers from these two headers.
        if body:
            headers.append((BODY_HEADER, body.decode("ascii")))
        if status != 401:
            status = 403
    return status, headers


class AuthzApp:
    """WSGI app answering the authorization paths above with ``LicenseGate``'s decision.

    :param config: the gate's configuration; ``trusted_proxies`` lists the proxies
        allowed to ask (empty: every request is refused with 403).
    """

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self.gate = LicenseGate(_allowed, config)
        self.engine = self.gate.engine
        self._trusted = self.engine.client_address.is_trusted
        self._rid_header = config.request_id_header
        self._rid_key = "HTTP_" + config.request_id_header.upper().replace("-", "_")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        nginx = path == NGINX_PATH
        head = environ.get("REQUEST_METHOD") == "HEAD"
        try:
            peer = environ.get("REMOTE_ADDR")
            if not peer or not self._trusted(peer):
                raise UntrustedPeer(peer)
            original = describe(
                path,
                environ.get("REQUEST_METHOD", ""),
                environ.get("RAW_URI") or environ.get("REQUEST_URI"),
                lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")),
            )
            inner = _inner_environ(environ, original)
        except LicenseChainError as exc:
            refusal = render_refusal(exc, request_id(environ.get(self._rid_key)), self._rid_header)
            return self._answer(
                start_response, refusal.status, refusal.headers, refusal.body, nginx, head
            )

        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [int(status[:3]), headers]
            return _no_write

        body = b"".join(self.gate(inner, capture))
        decision = inner.get(RESULT_KEY)
        environ[RESULT_KEY] = decision
        record = record_of_environ(environ)
        if record is not None:
            record.method = original.method
            record.path = decision.path if decision is not None and decision.path else path
        status, headers = captured
        return self._answer(start_response, status, headers, body, nginx, head)

    def _answer(
        self,
        start_response: StartResponse,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        nginx: bool,
        head: bool,
    ) -> Iterable[bytes]:
        if status != 200:
            status, headers = refusal_headers(status, headers, body, nginx)
        start_response(status_line(status), headers)
        return _EMPTY if head else (body,)

    def readiness(self) -> dict[str, bool]:
        return self.gate.readiness()

    def close(self) -> None:
        self.gate.close()


def _no_write(data: bytes) -> None:  # pragma: no cover - the gate never calls write()
    raise RuntimeError("write() is not supported")


def _allowed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The gate let the request through: say so, with its identity headers."""
    headers = [("Content-Length", "0"), ("Cache-Control", "no-store")]
    for key, name in _IDENTITY:
        value = environ.get(key)
        if value is not None:
            headers.append((name, value))
    decision = environ[RESULT_KEY]
    headers.append((PATH_HEADER, encode_path(decision.path)))
    start_response("200 OK", headers)
    return _EMPTY


def _inner_environ(environ: WSGIEnvironment, original: Original) -> dict[str, Any]:
    """The original request as the environ a WSGI server would have given the gate."""
    raw_path, query = original.split()
    inner: dict[str, Any] = {k: v for k, v in environ.items() if k[:5] == "HTTP_"}
    for key in _PROTOCOL_KEYS:
        inner.pop(key, None)
    if original.host:
        inner["HTTP_HOST"] = original.host
    else:
        inner.pop("HTTP_HOST", None)
    inner["REQUEST_METHOD"] = original.method
    # Servers decode the path once and hand it over as latin-1 text; so do we.
    inner["PATH_INFO"] = unquote_to_bytes(raw_path).decode("latin-1")
    inner["SCRIPT_NAME"] = ""
    inner["QUERY_STRING"] = query
    inner["RAW_URI"] = original.target
    inner["REMOTE_ADDR"] = environ.get("REMOTE_ADDR")
    inner["SERVER_NAME"] = environ.get("SERVER_NAME", "")
    inner["SERVER_PORT"] = environ.get("SERVER_PORT", "")
    inner["SERVER_PROTOCOL"] = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
    inner["wsgi.url_scheme"] = original.scheme
    return inner
