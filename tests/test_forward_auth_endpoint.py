"""The forward-auth endpoint on its own: the exact requests Traefik and Envoy send, the
trust rule, the configuration checks, and that no body is ever read.

Traefik's ``forwardAuth`` sends ``GET <address>`` with the client's headers and
``X-Forwarded-Method``, ``-Proto``, ``-Host``, ``-Uri`` and ``-For``. Envoy's ``ext_authz``
HTTP service sends the original method, ``path_prefix`` + the original path and query,
the original ``Host`` (``:authority``), ``Content-Length: 0`` and its own ``x-envoy-*``
and ``x-request-id`` headers. Both are replayed byte for byte against a real
``licensechain-gateway --mode authz`` process; the rest runs in-process.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port
from gateway_support.gateway_config import write_config
from gateway_support.processes import VENV_BIN, Server, run_server
from gateway_support.proxies import authz_args
from gateway_support.raw import RawResponse, raw_request
from gateway_support.tokens import AUDIENCE, ISSUER, TestIssuer
from licensechain_middleware import GateConfig, Rule
from licensechain_middleware.gateway.authz import AuthzApp
from licensechain_middleware.gateway.authz_asgi import AuthzASGI
from licensechain_middleware.gateway.config import config_from_document
from licensechain_middleware.gateway.settings import GatewayConfigError
from werkzeug.test import Client

pytestmark = pytest.mark.slow

TRUSTED = 'trusted_proxies = ["127.0.0.1/32"]'


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("authz-issuer"))


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def authz(
    request: pytest.FixtureRequest, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("authz")
    config = write_config(
        directory,
        upstream="http://127.0.0.1:9",
        jwks_file=issuer.jwks_file,
        gate=TRUSTED,
        gateway='mode = "authz"',
    )
    port = free_port()
    args = authz_args(config, port, request.param)
    with run_server(args, port, ready_path="/_licensechain/ready") as server:
        yield server


def send(port: int, lines: list[str]) -> RawResponse:
    return raw_request(port, ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode())


def header(response: RawResponse, name: str) -> list[str]:
    out = []
    for line in response.head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            out.append(value.strip())
    return out


def traefik(port: int, method: str, uri: str, extra: list[str] = ()) -> RawResponse:  # type: ignore[assignment]
    return send(
        port,
        [
            "GET /_licensechain/authz/forwarded HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "User-Agent: Go-http-client/1.1",
            *extra,
            "X-Forwarded-For: 203.0.113.7",
            "X-Forwarded-Host: app.example.com",
            f"X-Forwarded-Method: {method}",
            "X-Forwarded-Port: 443",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Server: traefik-1",
            f"X-Forwarded-Uri: {uri}",
            "X-Real-Ip: 203.0.113.7",
            "Accept-Encoding: gzip",
        ],
    )


def envoy(port: int, method: str, target: str, extra: list[str] = ()) -> RawResponse:  # type: ignore[assignment]
    return send(
        port,
        [
            f"{method} /_licensechain/authz/envoy{target} HTTP/1.1",
            "Host: app.example.com",
            *extra,
            "content-length: 0",
            "x-forwarded-proto: https",
            "x-request-id: 5b1c7a1e-1f0e-4c59-9a57-6f1d2c3b4a5e",
            "x-envoy-internal: true",
            "x-envoy-expected-rq-timeout-ms: 200",
        ],
    )


# -- Traefik -------------------------------------------------------------------------


def test_traefik_allow_carries_the_identity(authz: Server, issuer: TestIssuer) -> None:
    token = issuer.token(sub="lic_traefik", features=("premium",))
    response = traefik(authz.port, "POST", "/premium/a%2Db?x=1", [f"Authorization: Bearer {token}"])
    assert response.status == 200, response.everything
    assert header(response, "X-License-Subject") == ["lic_traefik"]
    assert header(response, "X-License-Features") == ["premium"]
    assert header(response, "X-License-App") == [AUDIENCE]
    assert header(response, "X-Licensechain-Path") == ["/premium/a-b"]
    assert response.body == b""


def test_traefik_refusal_is_the_contract_answer(authz: Server) -> None:
    response = traefik(authz.port, "GET", "/premium/x")
    assert response.status == 401
    assert header(response, "WWW-Authenticate") == ['Bearer realm="licensechain"']
    body = json.loads(response.body)
    assert body["error"] == "unauthorized"
    assert body["request_id"] == header(response, "X-Request-ID")[0]
    assert header(response, "X-Licensechain-Body") == []  # only on the nginx path


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("/public/../premium/x", 401),
        ("/public/..%2Fpremium/x", 400),
        ("//premium/x", 401),
        ("/public/%2e%2e/premium/x", 401),
        ("/public/x%23/../../premium/x", 400),
        ("premium/x", 400),
    ],
)
def test_traefik_uri_is_normalised_like_the_gate(authz: Server, uri: str, status: int) -> None:
    assert traefik(authz.port, "GET", uri).status == status


def test_underscore_spellings_never_describe_the_original(authz: Server) -> None:
    """Traefik passes a client's X_Forwarded_Uri on beside its own X-Forwarded-Uri."""
    response = traefik(
        authz.port, "GET", "/premium/x", ["X_Forwarded_Uri: /public/x", "X_Forwarded_Method: GET"]
    )
    assert response.status == 401


def test_traefik_path_ignores_the_nginx_headers(authz: Server, issuer: TestIssuer) -> None:
    """Traefik passes every client header on: an X-Original-URI is the client's own."""
    token = issuer.token(features=())
    response = traefik(
        authz.port,
        "GET",
        "/premium/x",
        [f"Authorization: Bearer {token}", "X-Original-URI: /public/x", "X-Original-Method: GET"],
    )
    assert response.status == 403


# -- Envoy ---------------------------------------------------------------------------


def test_envoy_allow_with_the_original_method_and_query(authz: Server, issuer: TestIssuer) -> None:
    token = issuer.token(sub="lic_envoy", features=("premium",))
    response = envoy(authz.port, "PUT", "/premium/x?y=%2F", [f"authorization: Bearer {token}"])
    assert response.status == 200, response.everything
    assert header(response, "X-License-Subject") == ["lic_envoy"]
    assert header(response, "X-Licensechain-Path") == ["/premium/x"]


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/premium/x", 401),
        ("/public/../premium/x", 401),
        ("/public/%2e%2e/premium/x", 401),
        ("/public/..%2fpremium/x", 400),
        ("/public/..;/premium/x", 400),
        ("/public/ok", 200),
    ],
)
def test_envoy_target_is_normalised_like_the_gate(authz: Server, target: str, status: int) -> None:
    assert envoy(authz.port, "GET", target).status == status


def test_envoy_head_refusal_has_no_body(authz: Server) -> None:
    response = envoy(authz.port, "HEAD", "/premium/x")
    assert response.status == 401
    assert header(response, "Content-Length") == ["0"]
    assert response.body == b""


def test_envoy_rate_limit_answers_429_with_retry_after(authz: Server, issuer: TestIssuer) -> None:
    token = issuer.token(sub="lic_envoy_limit")
    statuses = [
        envoy(authz.port, "GET", "/limited/x", [f"authorization: Bearer {token}"]) for _ in range(6)
    ]
    assert [r.status for r in statuses] == [200] * 5 + [429]
    assert int(header(statuses[-1], "Retry-After")[0]) >= 1
    assert json.loads(statuses[-1].body)["error"] == "rate_limited"


# -- nginx path (its answers for auth_request) ---------------------------------------


def test_nginx_path_sends_other_refusals_as_403_with_status_and_body(authz: Server) -> None:
    response = send(
        authz.port,
        [
            "GET /_licensechain/authz/nginx HTTP/1.1",
            "Host: app.example.com",
            "X-Original-URI: /public/..%2Fpremium/x",
            "X-Original-Method: GET",
        ],
    )
    assert response.status == 403
    assert header(response, "X-Licensechain-Status") == ["400"]
    body = json.loads(header(response, "X-Licensechain-Body")[0])
    assert body["error"] == "invalid_request"


# -- trust, configuration, bodies (in-process, both adapters) ------------------------


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _config(issuer: TestIssuer, rules: tuple[Rule, ...] = ()) -> GateConfig:
    return GateConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_file=str(issuer.jwks_file),
        trusted_proxies=("10.0.0.0/8",),
        rules=rules or (Rule("/public/**", public=True),),
    )


def _call(
    kind: str,
    config: GateConfig,
    path: str,
    headers: list[tuple[str, str]] | dict[str, str],
    peer: str = "10.1.2.3",
    method: str = "GET",
) -> Answer:
    """One request to the WSGI or the ASGI endpoint, in-process, from ``peer``."""
    if kind == "wsgi":
        response = Client(AuthzApp(config)).open(
            path, method=method, headers=headers, environ_base={"REMOTE_ADDR": peer}
        )
        return Answer(response.status_code, httpx.Headers(list(response.headers)), response.data)

    async def asgi() -> Answer:
        transport = httpx.ASGITransport(app=AuthzASGI(config), client=(peer, 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://authz") as client:
            response = await client.request(method, path, headers=headers)
        return Answer(response.status_code, response.headers, response.content)

    return asyncio.run(asgi())


ADAPTERS = pytest.mark.parametrize("kind", ["wsgi", "asgi"])


@ADAPTERS
def test_a_method_rule_sees_the_original_method(issuer: TestIssuer, kind: str) -> None:
    config = _config(issuer, (Rule("/docs/**", methods=("GET",), public=True),))
    path = "/_licensechain/authz/forwarded"
    for method, status in (("GET", 200), ("HEAD", 200), ("DELETE", 401)):
        headers = {"X-Forwarded-Uri": "/docs/a", "X-Forwarded-Method": method}
        assert _call(kind, config, path, headers).status == status, method


@ADAPTERS
@pytest.mark.parametrize(
    "path",
    [
        "/_licensechain/authz/nginx",
        "/_licensechain/authz/forwarded",
        "/_licensechain/authz/envoy/public/x",
        "/other",
    ],
)
def test_an_untrusted_peer_gets_403_whatever_it_asks(
    issuer: TestIssuer, kind: str, path: str
) -> None:
    headers = {"X-Original-URI": "/public/x", "X-Original-Method": "GET",
               "X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "GET"}  # fmt: skip
    answer = _call(kind, _config(issuer), path, headers, peer="192.0.2.1")
    assert answer.status == 403
    assert answer.json()["error"] == "forbidden"
    assert _call(kind, _config(issuer), path, headers, peer="10.9.9.9").status in (200, 404)


@ADAPTERS
@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/_licensechain/authz/nginx", {"X-Original-Method": "GET"}),
        ("/_licensechain/authz/nginx", {"X-Original-URI": "/public/x"}),
        ("/_licensechain/authz/forwarded", {"X-Forwarded-Method": "GET"}),
        (
            "/_licensechain/authz/forwarded",
            {"X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "G T"},
        ),
        (
            "/_licensechain/authz/forwarded",
            {
                "X-Forwarded-Uri": "/public/x",
                "X-Forwarded-Method": "GET",
                "X-Forwarded-Proto": "gopher",
            },
        ),
        # The underscore spelling is another header: never the original's description.
        # (ASGI only in-process: werkzeug folds "_" into "-" as CGI does; the WSGI
        # endpoint runs under gunicorn, which drops such headers: see the Traefik test.)
        pytest.param(
            "/_licensechain/authz/forwarded",
            {"X_Forwarded_Uri": "/public/x", "X-Forwarded-Method": "GET"},
        ),
    ],
)
def test_a_request_that_does_not_describe_the_original_is_400(
    issuer: TestIssuer, kind: str, path: str, headers: dict[str, str]
) -> None:
    if kind == "wsgi" and "X_Forwarded_Uri" in headers:
        pytest.skip("werkzeug folds '_' into '-'; gunicorn drops it (tested with a process)")
    answer = _call(kind, _config(issuer), path, headers)
    expected = 403 if path.endswith("nginx") else 400  # nginx: 403 carrying the 400
    assert answer.status == expected
    assert answer.headers["X-Licensechain-Status"] == "400"


def test_asgi_refuses_a_protocol_header_sent_twice(issuer: TestIssuer) -> None:
    headers = [("X-Forwarded-Uri", "/public/x"), ("X-Forwarded-Uri", "/premium/x"),
               ("X-Forwarded-Method", "GET")]  # fmt: skip
    answer = _call("asgi", _config(issuer), "/_licensechain/authz/forwarded", headers)
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_request"


@ADAPTERS
def test_an_unknown_authz_path_is_404(issuer: TestIssuer, kind: str) -> None:
    answer = _call(kind, _config(issuer), "/_licensechain/authz/nginxx", {})
    assert answer.status == 404
    assert answer.json()["error"] == "not_found"


@ADAPTERS
def test_a_client_identity_header_never_comes_back_as_the_decision(
    issuer: TestIssuer, kind: str
) -> None:
    token = issuer.token(sub="lic_real", features=())
    headers = {"X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "GET",
               "X-License-Subject": "lic_evil", "X_License_Plan": "evil",
               "Authorization": f"Bearer {token}"}  # fmt: skip
    answer = _call(kind, _config(issuer), "/_licensechain/authz/forwarded", headers)
    assert answer.status == 200
    assert answer.headers.get_list("X-License-Subject") == ["lic_real"]
    assert answer.headers.get_list("X-License-Plan") == ["pro"]
    anonymous = {k: v for k, v in headers.items() if k != "Authorization"}
    answer = _call(kind, _config(issuer), "/_licensechain/authz/forwarded", anonymous)
    assert answer.status == 200
    assert not [k for k in answer.headers if k.lower().startswith("x-license-")]


class _Unreadable(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the endpoint read the request body")

    readline = read  # type: ignore[assignment]


def test_no_body_is_ever_read(issuer: TestIssuer) -> None:
    token = issuer.token(features=())
    response = Client(AuthzApp(_config(issuer))).post(
        "/_licensechain/authz/forwarded",
        headers={
            "X-Forwarded-Uri": "/x",
            "X-Forwarded-Method": "POST",
            "Authorization": f"Bearer {token}",
            "Content-Length": "5",
        },
        environ_overrides={"wsgi.input": _Unreadable(), "REMOTE_ADDR": "10.0.0.1"},
    )
    assert response.status_code == 200


def test_authz_mode_needs_trusted_proxies(issuer: TestIssuer) -> None:
    document = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(issuer.jwks_file)}
    with pytest.raises(GatewayConfigError, match="trusted_proxies"):
        config_from_document({**document, "gateway": {"mode": "authz"}}, {})
    with pytest.raises(GatewayConfigError, match="mode must be one of"):
        config_from_document({**document, "gateway": {"mode": "auth", "upstream": "http://x"}}, {})
    # No upstream needed for authz; still required for the proxy.
    config_from_document(
        {**document, "trusted_proxies": ["127.0.0.1"], "gateway": {"mode": "authz"}}, {}
    )
    with pytest.raises(GatewayConfigError, match="upstream is required"):
        config_from_document({**document, "gateway": {}}, {})


def test_the_cli_checks_authz_mode(tmp_path: Path, issuer: TestIssuer) -> None:
    config = write_config(
        tmp_path, upstream="http://127.0.0.1:9", jwks_file=issuer.jwks_file, gate=TRUSTED
    )
    command = [str(VENV_BIN / "licensechain-gateway"), "--config", str(config), "--check"]
    assert subprocess.run([*command, "--mode", "authz"], capture_output=True).returncode == 0
    bare = write_config(tmp_path, upstream="http://127.0.0.1:9", jwks_file=issuer.jwks_file,
                        name="bare.toml")  # fmt: skip
    checked = subprocess.run(
        [
            str(VENV_BIN / "licensechain-gateway"),
            "--config",
            str(bare),
            "--check",
            "--mode",
            "authz",
        ],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 2
    assert "trusted_proxies" in checked.stderr
