"""The gateway's layers called in-process: the paths that real servers never let through,
and the operations endpoints' answers."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from conftest import free_port
from licensechain_middleware.gateway.client import (
    AsyncTransportHolder,
    SyncTransportHolder,
    UpstreamLimits,
)
from licensechain_middleware.gateway.front_wsgi import WSGIFront
from licensechain_middleware.gateway.ops import OpsEndpoints
from licensechain_middleware.gateway.proxy_asgi import ASGIProxy
from licensechain_middleware.gateway.proxy_wsgi import WSGIProxy
from licensechain_middleware.gateway.urls import UpstreamBase

LIMITS = UpstreamLimits(connect_timeout=1.0, read_timeout=1.0)


def environ(path: str = "/x", query: str = "") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "HTTP_HOST": "gateway.test",
    }


class Captured:
    """A WSGI ``start_response`` that keeps what it was given."""

    status = ""
    headers: list[tuple[str, str]] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
    ) -> Callable[[bytes], object]:
        self.status, self.headers = status, headers
        return lambda data: None


def dead_upstream() -> UpstreamBase:
    return UpstreamBase(f"http://127.0.0.1:{free_port()}")


def test_wsgi_target_that_httpx_refuses_is_400_with_the_contract_body() -> None:
    proxy = WSGIProxy(dead_upstream(), SyncTransportHolder(LIMITS))
    captured = Captured()
    body = b"".join(proxy(environ(query="x=\x7f"), captured))
    assert captured.status.startswith("400")
    assert json.loads(body)["error"] == "invalid_request"


def test_wsgi_unreachable_upstream_is_502_without_details() -> None:
    proxy = WSGIProxy(dead_upstream(), SyncTransportHolder(LIMITS))
    captured = Captured()
    body = b"".join(proxy(environ(), captured))
    assert captured.status.startswith("502")
    assert json.loads(body)["error"] == "bad_gateway"
    assert b"127.0.0.1" not in body


async def _asgi_call(proxy: ASGIProxy, query: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http", "method": "GET", "path": "/x", "raw_path": b"/x", "root_path": "",
        "query_string": query, "headers": [(b"host", b"gateway.test")],
        "client": ("127.0.0.1", 1), "scheme": "http",
    }  # fmt: skip
    sent: list[Mapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    await proxy(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(("query", "status", "error"), [
    (b"x=\x7f", 400, "invalid_request"),
    (b"x=1", 502, "bad_gateway"),
])  # fmt: skip
def test_asgi_refusals_carry_the_contract_body(query: bytes, status: int, error: str) -> None:
    proxy = ASGIProxy(dead_upstream(), AsyncTransportHolder(LIMITS))
    got_status, body = asyncio.run(_asgi_call(proxy, query))
    assert got_status == status
    assert json.loads(body)["error"] == error


def front(readiness: Mapping[str, bool]) -> WSGIFront:
    def never(environ: Any, start_response: Any) -> list[bytes]:
        raise AssertionError("ops paths never reach the gate")

    return WSGIFront(never, OpsEndpoints(), lambda: readiness)


def test_ready_names_the_failing_dependency_only() -> None:
    captured = Captured()
    body = b"".join(
        front({"keys": True, "denylist": False})(environ("/_licensechain/ready"), captured)
    )
    assert captured.status.startswith("503")
    assert json.loads(body) == {"status": "unavailable", "failing": ["denylist"]}


def test_ops_paths_take_get_and_head_only() -> None:
    captured = Captured()
    env = {**environ("/_licensechain/health"), "REQUEST_METHOD": "POST"}
    body = b"".join(front({})(env, captured))
    assert captured.status.startswith("405")
    assert json.loads(body)["error"] == "method_not_allowed"
    assert ("Allow", "GET, HEAD") in captured.headers
