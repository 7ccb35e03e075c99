"""Helpers for the middleware tests: an issuer, raw WSGI environs and ASGI scopes, echo apps.

``wsgi_environ`` builds the environ a real server would: ``PATH_INFO`` is the
request-target's path percent-decoded once (bytes read as latin-1) and
``RAW_URI`` keeps the target as sent, so path tricks reach the gate exactly as
they would behind gunicorn or werkzeug.

Run as a script (``python tests/middleware_support.py serve ...``) it serves a
gated hello-world app on loopback, for the tests that need separate processes.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import jwt
from licensechain_middleware import GateConfig, LicenseGate, LicenseGateASGI, Rule

from flask_licensechain.core.contract import ALGORITHM, build_claims
from flask_licensechain.core.keys import SigningKey

ISSUER = "https://licenses.gate.test"
AUDIENCE = "app_gate_test"

Headers = Sequence[tuple[str, str]]


class Issuer:
    """One RSA key, its JWKS, and tokens signed with it."""

    __test__ = False

    def __init__(self, key: SigningKey | None = None) -> None:
        self.key = key or SigningKey.generate()

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.jwk()]}

    def claims(
        self,
        *,
        sub: str | None = None,
        features: Sequence[str] = (),
        plan: str | None = "pro",
        audience: str = AUDIENCE,
        **overrides: Any,
    ) -> dict[str, Any]:
        claims = build_claims(
            issuer=ISSUER,
            license_id=sub or f"lic_{uuid.uuid4().hex[:12]}",
            app_id=audience,
            seller_tier="pro",
            plan=plan,
            features=list(features),
            license_exp=None,
            hw_bound=False,
            now=int(time.time()),
        )
        claims.update(overrides)
        return claims

    def token(self, *, headers: Mapping[str, Any] | None = None, **claims: Any) -> str:
        return self.sign(self.claims(**claims), headers=headers)

    @staticmethod
    def claims_of(token: str) -> dict[str, Any]:
        data: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return data

    def sign(self, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None) -> str:
        return jwt.encode(
            dict(claims),
            self.key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self.key.kid, **(headers or {})},
        )


def gate_config(issuer: Issuer, **overrides: Any) -> GateConfig:
    """The test gate: ``/public/**`` open, ``/premium/**`` needs ``export``, rest licensed."""
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": issuer.jwks,
        "rules": (
            Rule("/public/**", public=True),
            Rule("/premium/**", features=("export",)),
        ),
    }
    values.update(overrides)
    return GateConfig(**values)


# -- WSGI ------------------------------------------------------------------------


def wsgi_environ(
    method: str = "GET",
    target: str = "/",
    headers: Headers = (),
    *,
    body: bytes = b"",
    remote_addr: str = "127.0.0.1",
    raw_uri: bool = True,
) -> dict[str, Any]:
    """The environ a server builds for ``method target`` with these header lines."""
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote_addr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if raw_uri:
        environ["RAW_URI"] = target
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ


class WSGIResponse:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split(" ", 1)[0])
        self.status_line = status
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call_wsgi(app: Any, environ: dict[str, Any]) -> WSGIResponse:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    chunks: Iterable[bytes] = app(environ, start_response)
    body = b"".join(chunks)
    return WSGIResponse(captured["status"], captured["headers"], body)


class EchoWSGI:
    """Records each environ it is given and answers 200."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.seen.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    @property
    def last(self) -> dict[str, Any]:
        return self.seen[-1]


# -- ASGI ------------------------------------------------------------------------


def asgi_scope(
    method: str = "GET",
    target: str = "/",
    headers: Headers = (),
    *,
    kind: str = "http",
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The scope a server builds: ``path`` decoded once (UTF-8), ``raw_path`` as sent."""
    path, _, query = target.partition("?")
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": unquote_to_bytes(path).decode("utf-8", "replace"),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
        "extensions": dict(extensions or {}),
    }
    if kind == "http":
        scope["method"] = method
    return scope


class ASGIResult:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        start = next(
            (
                m
                for m in messages
                if m["type"] in ("http.response.start", "websocket.http.response.start")
            ),
            None,
        )
        self.status = start["status"] if start else None
        self.headers = {k.decode().lower(): v.decode() for k, v in (start or {}).get("headers", [])}
        self.body = b"".join(m.get("body", b"") for m in messages if m["type"].endswith("body"))

    def json(self) -> Any:
        return json.loads(self.body)


def call_asgi(
    app: Any,
    scope: dict[str, Any],
    incoming: Sequence[dict[str, Any]] | None = None,
    *,
    runner: asyncio.Runner | None = None,
) -> ASGIResult:
    """Run one ASGI call; pass a ``runner`` to keep one event loop across calls (as a
    server does: asyncio clients such as Redis pools are bound to their loop)."""
    inbox = (
        list(incoming)
        if incoming is not None
        else (
            [{"type": "websocket.connect"}]
            if scope["type"] == "websocket"
            else [{"type": "http.request", "body": b"", "more_body": False}]
        )
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    if runner is not None:
        runner.run(app(scope, receive, send))
    else:
        asyncio.run(app(scope, receive, send))
    return ASGIResult(sent)


class EchoASGI:
    """Records each scope; answers HTTP 200 and accepts WebSockets."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"hello"})
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            message = await receive()
            await send({"type": message["type"] + ".complete"})

    @property
    def last(self) -> dict[str, Any]:
        return self.seen[-1]

    def header(self, name: str, index: int = -1) -> list[str]:
        wanted = name.lower().encode()
        return [v.decode() for k, v in self.seen[index]["headers"] if k == wanted]


# -- a gated server in its own process -------------------------------------------


def _hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("HTTP_X_LICENSE_SUBJECT", "-").encode()]


def serve(port: int, config_json: str) -> None:
    """``serve PORT CONFIG_JSON``: a wsgiref server with a gated hello-world app."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    config = GateConfig.from_mapping(json.loads(config_json))
    server = make_server("127.0.0.1", port, LicenseGate(_hello, config), handler_class=Quiet)
    server.serve_forever()


def _reached(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"REACHED subject=" + environ.get("HTTP_X_LICENSE_SUBJECT", "-").encode("latin-1")]


def wsgi_echo_app() -> LicenseGate:
    """Factory for gunicorn: ``REACHED subject=...`` behind a gate from ``LC_GATE_CONFIG``."""
    import os

    config = GateConfig.from_mapping(json.loads(os.environ["LC_GATE_CONFIG"]))
    return LicenseGate(_reached, config)


def asgi_echo_app() -> LicenseGateASGI:
    """Factory for uvicorn: the echo app behind a gate configured from ``LC_GATE_CONFIG``."""
    import os

    config = GateConfig.from_mapping(json.loads(os.environ["LC_GATE_CONFIG"]))
    return LicenseGateASGI(_WebSocketEcho(), config)


class _WebSocketEcho:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            subject = dict(scope["headers"]).get(b"x-license-subject", b"-").decode()
            await send({"type": "websocket.send", "text": subject})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"hello"})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("usage: middleware_support.py serve PORT CONFIG_JSON")
