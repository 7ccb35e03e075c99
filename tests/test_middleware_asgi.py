"""``LicenseGateASGI``: lifespan, HTTP and WebSocket gating, scope results, async limits,
and a real uvicorn server refusing and accepting WebSocket handshakes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client
from conftest import free_port
from licensechain_middleware import (
    CLAIMS_KEY,
    RESULT_KEY,
    GateConfig,
    GateResult,
    LicenseGateASGI,
    Rule,
)
from middleware_support import (
    AUDIENCE,
    ISSUER,
    EchoASGI,
    Issuer,
    asgi_scope,
    call_asgi,
    gate_config,
)
from websockets.typing import Origin

from flask_licensechain.core.keysource import StaticKeySource

INVALID_TOKEN = 'Bearer realm="licensechain", error="invalid_token"'


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def echo() -> EchoASGI:
    return EchoASGI()


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


def test_lifespan_passes_through(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    result = call_asgi(gate, scope, [{"type": "lifespan.startup"}])
    assert echo.last is scope
    assert [m["type"] for m in result.messages] == ["lifespan.startup.complete"]


def test_http_allowed_with_identity_in_headers_and_scope(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    token = issuer.token(sub="lic_a", features=("export",), plan="business")
    scope = asgi_scope("GET", "/public/../premium//x?q=1", [bearer(token)])
    result = call_asgi(gate, scope)
    assert (result.status, result.body) == (200, b"hello")
    forwarded = echo.last
    assert forwarded is not scope  # the app gets a copy
    assert echo.header("x-license-subject") == ["lic_a"]
    assert echo.header("x-license-app") == [AUDIENCE]
    assert echo.header("x-license-plan") == ["business"]
    assert echo.header("x-license-features") == ["export"]
    assert echo.header("x-license-token-id") == [issuer.claims_of(token)["jti"]]
    assert echo.header("authorization") == []
    assert forwarded["path"] == "/premium/x"
    assert forwarded["raw_path"] == b"/premium/x"
    assert forwarded["query_string"] == b"q=1"
    assert forwarded[CLAIMS_KEY].sub == "lic_a"
    # the decision is also left in the scope the gate received, for outer middleware
    decision: GateResult = scope[RESULT_KEY]
    assert decision.allowed and decision.subject == "lic_a" and decision.client_ip == "127.0.0.1"


def test_http_refused_with_the_contract_body(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    scope = asgi_scope("GET", "/premium/x", [bearer("junk"), ("x-request-id", "rid-9")])
    result = call_asgi(gate, scope)
    assert result.status == 401
    assert result.headers["www-authenticate"] == INVALID_TOKEN + ', error_description="malformed"'
    assert result.headers["x-request-id"] == "rid-9"
    assert result.json() == {
        "error": "unauthorized",
        "message": "The license token is invalid, expired or revoked.",
        "request_id": "rid-9",
        "reason": "malformed",
    }
    assert echo.seen == []
    assert scope[RESULT_KEY].reason == "token_invalid"


def test_missing_feature_is_403_and_head_has_no_body(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    token = issuer.token(features=())
    assert call_asgi(gate, asgi_scope("GET", "/premium/x", [bearer(token)])).status == 403
    head = call_asgi(gate, asgi_scope("HEAD", "/premium/x", [bearer(token)]))
    assert head.status == 403 and head.body == b""


def test_cookie_and_header_sources(issuer: Issuer, echo: EchoASGI) -> None:
    token = issuer.token(sub="lic_ck")
    config = gate_config(issuer, token_sources=("x-license-token", "cookie"), token_cookie="lc")
    gate = LicenseGateASGI(echo, config)
    # HTTP/2 may split cookies over several headers: each is cleaned
    headers = [("cookie", "a=1"), ("cookie", f"lc={token}; b=2")]
    assert call_asgi(gate, asgi_scope("GET", "/x", headers)).status == 200
    assert echo.header("cookie") == ["a=1", "b=2"]
    assert echo.header("x-license-subject") == ["lic_ck"]
    assert call_asgi(gate, asgi_scope("GET", "/x", [("x-license-token", token)])).status == 200
    assert echo.header("x-license-token") == []
    assert call_asgi(gate, asgi_scope("GET", "/x", [bearer(token)])).status == 401


def test_identity_follows_the_token_even_with_a_reused_jti(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    first = issuer.token(sub="lic_one", jti="same-jti")
    second = issuer.token(sub="lic_two", jti="same-jti")
    for token, sub in ((first, "lic_one"), (second, "lic_two"), (first, "lic_one")):
        assert call_asgi(gate, asgi_scope("GET", "/x", [bearer(token)])).status == 200
        assert echo.header("x-license-subject") == [sub]


def test_unknown_scope_types_pass_through(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    scope = {"type": "custom.thing"}
    call_asgi(gate, scope, [])
    assert echo.last is scope


def test_forwarded_for_lines_are_one_list(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer, trusted_proxies=("127.0.0.0/8",)))
    # a client-made first line cannot win over the hop a trusted proxy appended
    headers = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.4")]
    scope = asgi_scope("GET", "/public/x", headers)
    assert call_asgi(gate, scope).status == 200
    assert scope[RESULT_KEY].client_ip == "198.51.100.4"


# -- WebSocket ------------------------------------------------------------------------------


def test_websocket_refused_with_http_response_extension(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    scope = asgi_scope(
        kind="websocket", target="/premium/ws", extensions={"websocket.http.response": {}}
    )
    result = call_asgi(gate, scope)
    assert result.messages[0]["type"] == "websocket.http.response.start"
    assert result.status == 401
    assert result.json()["error"] == "unauthorized"
    assert echo.seen == []


def test_websocket_refused_by_close_without_the_extension(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    result = call_asgi(gate, asgi_scope(kind="websocket", target="/premium/ws"))
    assert result.messages == [{"type": "websocket.close", "code": 1008}]
    assert echo.seen == []


def test_websocket_allowed_on_its_handshake(issuer: Issuer, echo: EchoASGI) -> None:
    gate = LicenseGateASGI(echo, gate_config(issuer))
    token = issuer.token(sub="lic_ws", features=("export",))
    result = call_asgi(
        gate, asgi_scope(kind="websocket", target="/premium/ws", headers=[bearer(token)])
    )
    assert result.messages[0] == {"type": "websocket.accept"}
    assert echo.header("x-license-subject") == ["lic_ws"]


# -- the event loop is not blocked by cold verification ---------------------------------------


class _RecordingKeys:
    """A static key source that notes which thread asks for the keys."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._inner = StaticKeySource(jwks)
        self.threads: list[int] = []

    def current(self) -> Any:
        self.threads.append(threading.get_ident())
        return self._inner.current()

    def lookup_unknown(self, kid: str) -> Any:
        return None


def test_cold_tokens_are_verified_off_the_event_loop(issuer: Issuer, echo: EchoASGI) -> None:
    keys = _RecordingKeys(issuer.jwks)
    config = GateConfig(issuer=ISSUER, audience=AUDIENCE, key_source=keys)
    gate = LicenseGateASGI(echo, config)
    token = issuer.token()
    loop_threads: list[int] = []

    async def run_twice() -> None:
        loop_threads.append(threading.get_ident())
        for _ in range(2):
            sent: list[Any] = []
            inbox = [{"type": "http.request", "body": b""}]

            async def receive() -> Any:
                return inbox.pop(0)

            async def send(message: Any, sent: list[Any] = sent) -> None:
                sent.append(message)

            await gate(asgi_scope("GET", "/x", [bearer(token)]), receive, send)
            assert sent[0]["status"] == 200

    asyncio.run(run_twice())
    cold, warm = keys.threads[0], keys.threads[-1]
    assert cold != loop_threads[0]  # the first (cold) check ran in a worker thread
    assert warm == loop_threads[0]  # the cache hit ran inline


# -- rate limits (asyncio storage) -----------------------------------------------------------


@pytest.mark.redis
def test_async_rate_limit_in_redis(issuer: Issuer, echo: EchoASGI, redis_url: str) -> None:
    config = gate_config(
        issuer,
        rules=(Rule("/**", rate_limit="2/minute"),),
        ratelimit_storage_url=redis_url,
        ratelimit_key_prefix="lcgt" + uuid.uuid4().hex[:12],
    )
    gate = LicenseGateASGI(echo, config)
    assert gate.engine.limiter is not None and gate.engine.limiter.asynchronous
    token = issuer.token()
    with asyncio.Runner() as runner:
        statuses = [
            call_asgi(gate, asgi_scope("GET", "/a", [bearer(token)]), runner=runner)
            for _ in range(3)
        ]
        assert [r.status for r in statuses] == [200, 200, 429]
        assert statuses[-1].headers["x-ratelimit-limit"] == "2"
        assert int(statuses[-1].headers["retry-after"]) >= 1
        assert runner.run(gate.readiness()) == {"keys": True, "ratelimit": True}


def test_async_rate_limit_fails_open_or_closed(issuer: Issuer, echo: EchoASGI) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    token = issuer.token()
    rules = (Rule("/**", rate_limit="2/minute"),)
    open_gate = LicenseGateASGI(echo, gate_config(issuer, rules=rules, ratelimit_storage_url=dead))
    assert call_asgi(open_gate, asgi_scope("GET", "/a", [bearer(token)])).status == 200
    closed = LicenseGateASGI(
        echo,
        gate_config(issuer, rules=rules, ratelimit_storage_url=dead, ratelimit_fail_open=False),
    )
    assert call_asgi(closed, asgi_scope("GET", "/a", [bearer(token)])).status == 503


# -- a real uvicorn server --------------------------------------------------------------------


@pytest.fixture
def uvicorn_server(issuer: Issuer) -> Iterator[str]:
    port = free_port()
    config = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": issuer.jwks,
        "token_sources": ["bearer", "cookie"],
        "rules": [{"path": "/public/**", "public": True}],
    }
    env = dict(os.environ, LC_GATE_CONFIG=json.dumps(config))
    env["PYTHONPATH"] = str(Path(__file__).parent) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "middleware_support:asgi_echo_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read() if proc.stderr else b"uvicorn exited")
            try:
                httpx.get(f"http://{url}/public/up", timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_real_websocket_handshake_is_gated(issuer: Issuer, uvicorn_server: str) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        websockets.sync.client.connect(f"ws://{uvicorn_server}/ws", open_timeout=5)
    assert refused.value.response.status_code == 401  # no token: RFC 6750 invalid_request
    token = issuer.token(sub="lic_real_ws")
    cookie = {"Cookie": f"license_token={token}"}
    with pytest.raises(websockets.exceptions.InvalidStatus) as cross_site:
        websockets.sync.client.connect(
            f"ws://{uvicorn_server}/ws",
            additional_headers=cookie,
            origin=Origin("http://evil.example"),
            open_timeout=5,
        )
    assert cross_site.value.response.status_code == 403
    with websockets.sync.client.connect(
        f"ws://{uvicorn_server}/ws",
        additional_headers=cookie,
        origin=Origin(f"http://{uvicorn_server}"),  # a browser sends it on every handshake
        open_timeout=5,
    ) as ws:
        assert ws.recv(timeout=5) == "lic_real_ws"
    r = httpx.get(f"http://{uvicorn_server}/x", headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.text) == (200, "hello")
    assert httpx.get(f"http://{uvicorn_server}/x").status_code == 401
