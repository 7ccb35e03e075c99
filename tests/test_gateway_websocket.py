"""The ASGI gateway (uvicorn) proxies WebSockets; the gate checks the handshake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from gateway_support.gateway_config import write_config
from gateway_support.processes import Server, gateway_server, upstream_server
from gateway_support.tokens import TestIssuer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.slow

RULES = """
[[rules]]
path = "/ws/**"
features = ["live"]
"""


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def gateway(issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with upstream_server() as upstream:
        config = write_config(
            tmp_path_factory.mktemp("gw"),
            upstream=upstream.url,
            jwks_file=issuer.jwks_file,
            rules=RULES,
        )
        with gateway_server(config, server="uvicorn") as server:
            yield server


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def test_messages_subprotocol_and_close_code_pass_both_ways(
    gateway: Server, issuer: TestIssuer
) -> None:
    token = issuer.token(sub="lic_ws", features=("live",))

    async def session() -> None:
        async with connect(
            ws_url(gateway, "/ws/echo"),
            additional_headers={"Authorization": f"Bearer {token}", "X-License-Subject": "evil"},
            subprotocols=["chat.v1"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "chat.v1"
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x00\x01\x02"
            await ws.send("headers")
            headers = dict((k.lower(), v) for k, v in json.loads(await ws.recv()))
            assert headers["x-license-subject"] == "lic_ws"
            assert "authorization" not in headers
            assert "evil" not in json.dumps(headers)
            await ws.send("close")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4001
            assert ws.close_reason == "asked"

    asyncio.run(session())


@pytest.mark.parametrize(
    ("features", "status"), [(None, 401), (("other",), 403)], ids=["no-token", "no-feature"]
)
def test_handshake_without_the_license_is_refused(
    gateway: Server, issuer: TestIssuer, features: tuple[str, ...] | None, status: int
) -> None:
    headers = {}
    if features is not None:
        headers["Authorization"] = f"Bearer {issuer.token(features=features)}"

    async def session() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(gateway, "/ws/echo"), additional_headers=headers):
                pass
        assert refused.value.response.status_code == status

    asyncio.run(session())


def test_upstream_refusing_the_websocket_is_a_clean_refusal(
    gateway: Server, issuer: TestIssuer
) -> None:
    token = issuer.token(features=("live",))

    async def session() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                ws_url(gateway, "/ws/nowhere"),
                additional_headers={"Authorization": f"Bearer {token}"},
            ):
                pass
        response = refused.value.response
        assert response.status_code == 502
        assert json.loads(response.body)["error"] == "bad_gateway"

    asyncio.run(session())
