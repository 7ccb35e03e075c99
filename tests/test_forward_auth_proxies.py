"""The forward-auth endpoint behind real nginx and Caddy, with the shipped configurations.

Processes: the echo upstream (it reports the method, raw path, query and every header it
received), ``licensechain-gateway --mode authz`` with a Redis denylist and rate limits,
and nginx (``examples/nginx_forward_auth/nginx.conf``, with and without its decision
cache) and Caddy (``examples/nginx_forward_auth/Caddyfile``) in front, each with only its
ports changed. Every hostile request is sent as raw bytes, so no client library cleans
it first. Zero bypasses: a request that could mean a licensed path never reaches the
upstream without the license, and the upstream only ever sees the path the gate matched.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from gateway_support.gateway_config import write_config
from gateway_support.processes import Server, run_server, upstream_server
from gateway_support.proxies import (
    Ports,
    authz_args,
    caddy_server,
    caddyfile,
    nginx_conf,
    nginx_server,
)
from gateway_support.raw import RawResponse, get, raw_request
from gateway_support.tokens import TestIssuer

from flask_licensechain.core.denylist import denylist_from_uri

pytestmark = [pytest.mark.slow, pytest.mark.redis]

IDENTITY = (
    "x-license-subject",
    "x-license-app",
    "x-license-plan",
    "x-license-features",
    "x-license-token-id",
)
#: Names a client must never get past the proxy (identity, the path hint, the token).
MANAGED = (*IDENTITY, "x-licensechain-path")


@dataclass
class Backend:
    issuer: TestIssuer
    upstream: Server
    authz: Server
    ports: Ports
    redis_url: str
    directory: Path


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def backend(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """The decision service under each server (the WSGI and the ASGI endpoint)."""
    directory = tmp_path_factory.mktemp("forward-auth")
    issuer = TestIssuer(directory)
    with ExitStack() as stack:
        upstream = stack.enter_context(upstream_server())
        ports = Ports(authz=free_port(), upstream=upstream.port)
        config = write_config(
            directory,
            upstream=upstream.url,
            jwks_file=issuer.jwks_file,
            gate=(
                'trusted_proxies = ["127.0.0.1/32"]\n'
                'token_sources = ["bearer", "x-license-token"]\n'
                f'denylist_url = "{redis_url}"\n'
                f'ratelimit_storage_url = "{redis_url}"'
            ),
            gateway='mode = "authz"',
        )
        authz = stack.enter_context(
            run_server(
                authz_args(config, ports.authz, request.param),
                ports.authz,
                ready_path="/_licensechain/ready",
            )
        )
        yield Backend(issuer, upstream, authz, ports, redis_url, directory)


@pytest.fixture(scope="module")
def nginx(backend: Backend) -> Iterator[Server]:
    conf = nginx_conf(backend.ports, free_port())
    with nginx_server(conf) as server:
        yield server


@pytest.fixture(scope="module")
def caddy(backend: Backend) -> Iterator[Server]:
    text = caddyfile(backend.ports, free_port())
    with caddy_server(text, backend.directory / "caddy") as server:
        yield server


@pytest.fixture(params=["nginx", "caddy"])
def front(request: pytest.FixtureRequest, backend: Backend) -> Server:
    server: Server = request.getfixturevalue(request.param)  # either runs in front of backend
    return server


# -- helpers -------------------------------------------------------------------------


def headers_of(response: RawResponse) -> list[tuple[str, str]]:
    lines = response.head.split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]


def header_values(response: RawResponse, name: str) -> list[str]:
    return [v for k, v in headers_of(response) if k == name]


def body_of(response: RawResponse) -> bytes:
    if "chunked" not in header_values(response, "transfer-encoding"):
        return response.body
    out, rest = b"", response.body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def echo(response: RawResponse) -> dict[str, Any]:
    """What the upstream saw; fails unless the request reached it."""
    assert response.status == 200, (response.status, response.head, response.body[:300])
    data: dict[str, Any] = json.loads(body_of(response))
    assert "raw_path" in data, data
    return data


def upstream_headers(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in data["headers"]]


def contract_error(response: RawResponse, status: int, error: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.head, response.body[:300])
    assert header_values(response, "content-type") == ["application/json"]
    body: dict[str, Any] = json.loads(body_of(response))
    assert body["error"] == error, body
    assert body["request_id"] == header_values(response, "x-request-id")[0]
    assert "raw_path" not in body  # the gate answered, not the upstream
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sub() -> str:
    return f"lic_fa_{uuid.uuid4().hex[:10]}"


# -- allowed and refused -------------------------------------------------------------


def test_public_path_passes_without_a_token_and_without_identity(front: Server) -> None:
    data = echo(get(front.port, "/public/hello?x=1"))
    assert data["raw_path"] == "/public/hello"
    assert data["query"] == "x=1"
    assert not [k for k, _ in upstream_headers(data) if k in MANAGED]


def test_no_token_on_a_licensed_path_is_401_with_the_challenge(front: Server) -> None:
    response = get(front.port, "/premium/report")
    contract_error(response, 401, "unauthorized")
    assert header_values(response, "www-authenticate") == ['Bearer realm="licensechain"']


def test_a_bad_token_is_401_invalid_token_with_its_reason(front: Server) -> None:
    response = get(front.port, "/premium/report", bearer("not.a.token"))
    assert contract_error(response, 401, "unauthorized")["reason"] == "malformed"
    assert header_values(response, "www-authenticate") == [
        'Bearer realm="licensechain", error="invalid_token", error_description="malformed"'
    ]


def test_a_missing_feature_is_403_insufficient_scope(front: Server, backend: Backend) -> None:
    token = backend.issuer.token(features=("other",))
    response = get(front.port, "/premium/report", bearer(token))
    contract_error(response, 403, "insufficient_scope")
    assert header_values(response, "www-authenticate") == [
        'Bearer realm="licensechain", error="insufficient_scope"'
    ]


@pytest.mark.parametrize("source", ["bearer", "x-license-token"])
def test_allowed_request_carries_the_identity_and_never_the_token(
    front: Server, backend: Backend, source: str
) -> None:
    licensee = sub()
    token = backend.issuer.token(sub=licensee, features=("premium", "b"), plan="gold")
    headers = bearer(token) if source == "bearer" else {"X-License-Token": token}
    data = echo(get(front.port, "/premium/report?q=%2F1", headers))
    assert data["raw_path"] == "/premium/report"
    assert data["query"] == "q=%2F1"
    seen = dict(upstream_headers(data))
    assert seen["x-license-subject"] == licensee
    assert seen["x-license-plan"] == "gold"
    assert seen["x-license-features"] == "b,premium"
    assert seen["x-license-token-id"] == TestIssuer.claims_of(token)["jti"]
    assert "authorization" not in seen
    assert "x-license-token" not in seen
    assert token not in json.dumps(data)


def test_a_non_bearer_authorization_reaches_the_upstream(front: Server) -> None:
    data = echo(get(front.port, "/public/x", {"Authorization": "Basic dXNlcjpwdw=="}))
    assert dict(upstream_headers(data))["authorization"] == "Basic dXNlcjpwdw=="


# -- spoofed identity headers --------------------------------------------------------


def _spellings(name: str) -> list[str]:
    dashed = "-".join(part.capitalize() for part in name.split("-"))
    return [dashed, name, name.upper(), dashed.replace("-", "_"), name.replace("-", "_")]


SPOOFED = {spelling: "evil" for name in MANAGED for spelling in _spellings(name)}


@pytest.mark.parametrize("with_token", [True, False])
def test_spoofed_identity_headers_never_reach_the_upstream(
    front: Server, backend: Backend, with_token: bool
) -> None:
    licensee = sub()
    headers = dict(SPOOFED)
    if with_token:
        headers.update(bearer(backend.issuer.token(sub=licensee, features=("premium",))))
    path = "/premium/report" if with_token else "/public/report"
    data = echo(get(front.port, path, headers))
    assert data["raw_path"] == path
    managed = [(k, v) for k, v in upstream_headers(data) if k.replace("_", "-") in MANAGED]
    assert all(v != "evil" for _, v in managed), managed
    if with_token:
        # Exactly one of each identity header, with the gate's value.
        assert sorted(k for k, _ in managed) == sorted(IDENTITY), managed
        assert dict(managed)["x-license-subject"] == licensee
    else:
        assert managed == []


@pytest.mark.parametrize(
    "spoof",
    [
        {"X-Original-URI": "/public/x", "X-Original-Method": "GET"},
        {"X-Forwarded-Uri": "/public/x", "X-Forwarded-Method": "GET"},
        {"X_Original_URI": "/public/x", "X_Forwarded_Uri": "/public/x"},
    ],
)
def test_a_client_cannot_describe_the_request_for_the_gate(
    front: Server, backend: Backend, spoof: dict[str, str]
) -> None:
    token = backend.issuer.token(features=())
    contract_error(get(front.port, "/premium/report", {**spoof, **bearer(token)}), 403,
                   "insufficient_scope")  # fmt: skip
    contract_error(get(front.port, "/premium/report", spoof), 401, "unauthorized")


# -- path tricks ---------------------------------------------------------------------

#: Targets that could mean /premium/report somewhere; (target, statuses allowed).
PREMIUM_TRICKS = [
    ("/premium/report", {403}),
    ("//premium/report", {403}),
    ("/premium//report", {403}),
    ("/public/../premium/report", {403}),
    ("/public/./../premium/./report", {403}),
    ("/public/%2e%2e/premium/report", {403}),
    ("/public/%2E%2E/premium/report", {403}),
    ("/%70remium/report", {403}),
    ("/premium/%72eport", {403}),
    ("/public/..%2Fpremium/report", {400}),
    ("/public%2F..%2Fpremium%2Freport", {400}),
    ("/premium%2freport", {400}),
    ("/public/..%5Cpremium/report", {400}),
    ("/public/..\\premium/report", {400}),
    ("/public/..;/premium/report", {400}),
    ("/premium;x=1/report", {400}),
    ("/public/x%23/../../premium/report", {400}),
    ("/public/x%3F/../../premium/report", {400}),
    ("/public/%252e%252e/premium/report", {400}),
    ("/premium/report%00", {400}),
    ("/public/%0d%0a/../premium/report", {400}),
    # Absolute form: nginx takes the path (and the gate refuses it); Caddy picks the site
    # by the URI's host, has none for it and answers an empty 200 itself.
    ("http://evil.example/premium/report", {403, 200}),
    # nginx refuses a ".." above the root itself (400); Caddy passes it on and the gate
    # resolves it to the root, as RFC 3986 says.
    ("/../premium/report", {400, 403}),
]


@pytest.mark.parametrize(("target", "statuses"), PREMIUM_TRICKS)
def test_path_tricks_never_reach_the_licensed_path_without_its_feature(
    front: Server, backend: Backend, target: str, statuses: set[int]
) -> None:
    token = backend.issuer.token(features=("other",))  # valid, but not "premium"
    response = get(front.port, target, bearer(token))
    assert response.status in statuses, (target, response.status, response.body[:300])
    assert b"raw_path" not in response.body  # never the upstream's answer
    if response.status == 200:
        assert body_of(response) == b""


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        # nginx merges slashes and resolves dot segments only for its own location
        # matching; the upstream gets the path the gate matched, in both proxies.
        ("/public//a/./b/../c", "/public/a/c"),
        ("/public/%61", "/public/a"),
        # Case: matched as sent (rules are case-sensitive), and forwarded as matched.
        ("/PREMIUM/report", "/PREMIUM/report"),
    ],
)
def test_the_upstream_gets_the_path_the_gate_matched(
    front: Server, backend: Backend, target: str, forwarded: str
) -> None:
    token = backend.issuer.token(features=("other",))
    data = echo(get(front.port, target, bearer(token)))
    assert data["path"] == forwarded
    # nginx sends the matched path as the gate encoded it; Caddy's rewrite keeps the
    # client's escapes when they decode to the same path (/public/%61 for /public/a).
    assert data["raw_path"] == forwarded or "%" in target


# -- revocation, rate limits, failure ------------------------------------------------


def _poll_until_refused(port: int, path: str, headers: dict[str, str]) -> RawResponse:
    deadline = time.monotonic() + 15
    while True:
        response = get(port, path, headers)
        if response.status != 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_a_revoked_token_is_refused(front: Server, backend: Backend) -> None:
    token = backend.issuer.token(sub=sub(), features=("premium",))
    echo(get(front.port, "/premium/report", bearer(token)))  # verified and cached once
    denylist = denylist_from_uri(backend.redis_url)
    try:
        denylist.revoke_jti(TestIssuer.claims_of(token)["jti"], ttl=120)
        response = _poll_until_refused(front.port, "/premium/report", bearer(token))
        assert contract_error(response, 401, "unauthorized")["reason"] == "revoked"
        assert 'error_description="revoked"' in header_values(response, "www-authenticate")[0]
    finally:
        denylist.close()


def test_rate_limit_429_reaches_the_client_with_retry_after(
    front: Server, backend: Backend
) -> None:
    token = backend.issuer.token(sub=sub())
    for _ in range(5):  # /limited/** allows 5 a minute per license
        echo(get(front.port, "/limited/x", bearer(token)))
    response = get(front.port, "/limited/x", bearer(token))
    contract_error(response, 429, "rate_limited")
    assert int(header_values(response, "retry-after")[0]) >= 1
    assert header_values(response, "x-ratelimit-limit") == ["5"]


def test_a_request_body_reaches_the_upstream_but_not_the_gate(front: Server) -> None:
    body = b"x" * 100_000
    head = (
        "POST /public/upload-echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    data = echo(raw_request(front.port, head.encode() + body))
    assert data["method"] == "POST"
    assert data["body_bytes"] == len(body)


def test_nginx_fails_closed_when_the_decision_service_is_down(backend: Backend) -> None:
    dead = Ports(authz=free_port(), upstream=backend.ports.upstream)
    with nginx_server(nginx_conf(dead, free_port())) as server:
        response = get(server.port, "/public/x")
        contract_error(response, 503, "unavailable")


def test_caddy_fails_closed_when_the_decision_service_is_down(
    backend: Backend, tmp_path: Path
) -> None:
    dead = Ports(authz=free_port(), upstream=backend.ports.upstream)
    with caddy_server(caddyfile(dead, free_port()), tmp_path / "caddy") as server:
        response = get(server.port, "/public/x")
        assert response.status >= 500
        assert b"raw_path" not in response.body


# -- nginx's decision cache ----------------------------------------------------------


def test_the_decision_cache_is_keyed_by_token_and_path_and_bounds_revocation(
    backend: Backend,
) -> None:
    """With a long cache lifetime, so that what the cache does is certain: a revoked
    token's cached allow keeps passing (the documented cost), while another path or
    another token is decided afresh."""
    conf = nginx_conf(backend.ports, free_port(), cache=True)
    assert "proxy_cache_valid 200 1s;" in conf  # the shipped default
    conf = conf.replace("proxy_cache_valid 200 1s;", "proxy_cache_valid 200 60s;")
    with nginx_server(conf) as server:
        token = backend.issuer.token(sub=sub(), features=("premium",))
        echo(get(server.port, "/premium/report", bearer(token)))
        denylist = denylist_from_uri(backend.redis_url)
        try:
            denylist.revoke_jti(TestIssuer.claims_of(token)["jti"], ttl=120)
            # A fresh decision for the same token on another target sees the revocation
            # (once it reached the decision service: each try is a new target, so that an
            # allow cached just before that cannot answer the next try)...
            deadline = time.monotonic() + 15
            tries = 0
            while True:
                tries += 1
                refused = get(server.port, f"/premium/other?try={tries}", bearer(token))
                if refused.status != 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            contract_error(refused, 401, "unauthorized")
            # ...while the cached allow for the first path still stands.
            echo(get(server.port, "/premium/report", bearer(token)))
        finally:
            denylist.close()
        other = backend.issuer.token(features=("other",))
        contract_error(get(server.port, "/premium/report", bearer(other)), 403,
                       "insufficient_scope")  # fmt: skip
        # Refusals are never cached: the same request without a token stays refused.
        contract_error(get(server.port, "/premium/report"), 401, "unauthorized")


def test_the_shipped_one_second_cache_refuses_a_revoked_token_soon(backend: Backend) -> None:
    with nginx_server(nginx_conf(backend.ports, free_port(), cache=True)) as server:
        token = backend.issuer.token(sub=sub(), features=("premium",))
        echo(get(server.port, "/premium/report", bearer(token)))
        denylist = denylist_from_uri(backend.redis_url)
        try:
            denylist.revoke_jti(TestIssuer.claims_of(token)["jti"], ttl=120)
            response = _poll_until_refused(server.port, "/premium/report", bearer(token))
            contract_error(response, 401, "unauthorized")
        finally:
            denylist.close()


def test_head_is_decided_like_get(front: Server, backend: Backend) -> None:
    head = "HEAD /premium/report HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    refused = raw_request(front.port, (head + "\r\n").encode())
    assert refused.status == 401
    assert header_values(refused, "www-authenticate") == ['Bearer realm="licensechain"']
    assert refused.body == b""
    token = backend.issuer.token(features=("premium",))
    allowed = raw_request(front.port, (head + f"Authorization: Bearer {token}\r\n\r\n").encode())
    assert allowed.status == 200
    assert allowed.body == b""


def test_one_request_id_from_the_client_to_the_refusal_and_the_upstream(
    front: Server, backend: Backend
) -> None:
    refused = get(front.port, "/premium/report", {"X-Request-ID": "client-id-1"})
    assert contract_error(refused, 401, "unauthorized")["request_id"] == "client-id-1"
    token = backend.issuer.token(features=("premium",))
    data = echo(
        get(front.port, "/premium/report", {"X-Request-ID": "client-id-2", **bearer(token)})
    )
    assert dict(upstream_headers(data))["x-request-id"] == "client-id-2"
