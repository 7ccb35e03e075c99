"""A request body where the upstream does not expect one must not smuggle a request past
the gate: examples/legacy_service behind its gateway.toml, on gunicorn and uvicorn, and the
same gateway in front of an upstream that never reads bodies (tests/gateway_support/
body_ignoring_upstream.py), where a body left unread is taken for the next request."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from conftest import free_port
from gateway_support.conn import Closed, RawConnection, Response, request_bytes
from gateway_support.processes import HERE, REPO, Server, gateway_server, run_server
from gateway_support.tokens import AUDIENCE, ISSUER, TestIssuer

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "legacy_service"
SMUGGLED = b"GET /reports/export HTTP/1.1\r\nHost: x\r\n\r\n"
CSV_MARK = b"id,name"
SERVERS = ("gunicorn", "uvicorn")


def _length(body: bytes) -> str:
    return f"Content-Length: {len(body)}"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("smuggling-issuer"))


def _example_env(issuer: TestIssuer, upstream: str, **gateway: str) -> dict[str, str]:
    """examples/legacy_service/gateway.toml as is, with the test issuer and free ports."""
    env = {
        "LICENSECHAIN_AUDIENCE": AUDIENCE,
        "LICENSECHAIN_ISSUER": ISSUER,
        "LICENSECHAIN_JWKS_URL": "",
        "LICENSECHAIN_JWKS_FILE": str(issuer.jwks_file),
        "LICENSECHAIN_GATEWAY_UPSTREAM": upstream,
    }
    env.update({f"LICENSECHAIN_GATEWAY_{k.upper()}": v for k, v in gateway.items()})
    return env


def _legacy_service() -> Iterator[Server]:
    port = free_port()
    with run_server([sys.executable, str(EXAMPLE / "service.py"), "--port", str(port)], port) as s:
        yield s


def _ignoring_upstream() -> Iterator[Server]:
    port = free_port()
    args = [sys.executable, str(HERE / "body_ignoring_upstream.py"), "--port", str(port)]
    with run_server(args, port) as s:
        yield s


@pytest.fixture(scope="module")
def legacy() -> Iterator[Server]:
    yield from _legacy_service()


@pytest.fixture(scope="module")
def ignoring() -> Iterator[Server]:
    yield from _ignoring_upstream()


@pytest.fixture(scope="module", params=SERVERS)
def example_gateway(
    request: pytest.FixtureRequest, issuer: TestIssuer, legacy: Server
) -> Iterator[Server]:
    """The example gateway in front of the example service."""
    env = _example_env(issuer, legacy.url)
    with gateway_server(EXAMPLE / "gateway.toml", server=request.param, env=env) as gw:
        yield gw


@pytest.fixture(scope="module", params=SERVERS)
def gateways_to_ignoring(
    request: pytest.FixtureRequest, issuer: TestIssuer, ignoring: Server
) -> Iterator[tuple[Server, Server, Server]]:
    """The example gateway with its defaults, and one with ``allow_get_body = true``, both in
    front of the upstream that never reads bodies."""
    with ExitStack() as stack:
        default = stack.enter_context(
            gateway_server(
                EXAMPLE / "gateway.toml",
                server=request.param,
                env=_example_env(issuer, ignoring.url),
            )
        )
        allowing = stack.enter_context(
            gateway_server(
                EXAMPLE / "gateway.toml",
                server=request.param,
                env=_example_env(issuer, ignoring.url, allow_get_body="true"),
            )
        )
        yield default, allowing, ignoring


def _attack(port: int, first: bytes, method: str = "GET") -> list[Response]:
    """``first``, then three ``GET /status`` on the same connection (a new one once the
    gateway closed it), then three from another client: every answer, in order."""
    answers: list[Response] = []
    conn = RawConnection(port)
    try:
        conn.send(first)
        answers.append(conn.read_response(method))
        for _ in range(3):
            try:
                answers.append(conn.request("GET", "/status"))
            except (Closed, BrokenPipeError, ConnectionResetError):
                conn.close()
                conn = RawConnection(port)
                answers.append(conn.request("GET", "/status"))
    finally:
        conn.close()
    with RawConnection(port) as other:
        answers += [other.request("GET", "/status") for _ in range(3)]
    return answers


def _no_export(answers: list[Response], upstream: Server | None = None) -> None:
    for answer in answers:
        assert CSV_MARK not in answer.body, answer
    if upstream is not None:
        assert "SEEN GET /reports/export" not in upstream.log()


def _smuggling_get(body: bytes = SMUGGLED) -> bytes:
    return request_bytes("GET", "/status", (_length(body),), body)


def test_the_export_needs_a_token(example_gateway: Server) -> None:
    with RawConnection(example_gateway.port) as conn:
        assert conn.request("GET", "/reports/export").status == 401


def test_a_body_on_get_smuggles_nothing_to_the_example_service(example_gateway: Server) -> None:
    answers = _attack(example_gateway.port, _smuggling_get())
    _no_export(answers)
    assert answers[0].status == 400
    assert b'"body_not_allowed"' in answers[0].body or b"invalid_request" in answers[0].body
    assert [a.status for a in answers[1:]] == [200] * 6


def test_the_example_service_reads_or_refuses_bodies(legacy: Server) -> None:
    """The service alone, no gateway: a GET body is refused and the connection closed, so
    nothing in it is ever read as a request."""
    answers = _attack(legacy.port, _smuggling_get())
    _no_export(answers)
    assert answers[0].status == 400
    with RawConnection(legacy.port) as conn:
        body = b"x" * 10
        posted = conn.request("POST", "/reports/export", (_length(body),), body)
        assert posted.status == 200
        assert b'"received_bytes": 10' in posted.body
        chunked = conn.request("POST", "/reports/export", ("Transfer-Encoding: chunked",), b"")
        assert chunked.status in (400, 411, 501)


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(_smuggling_get(), id="get-content-length"),
        pytest.param(
            request_bytes(
                "GET",
                "/status",
                ("Transfer-Encoding: chunked",),
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED),
            ),
            id="get-chunked",
        ),
        pytest.param(
            request_bytes("GET", "/status", ("Expect: 100-continue", _length(SMUGGLED)), SMUGGLED),
            id="get-expect-continue",
        ),
        pytest.param(
            request_bytes("OPTIONS", "/status", (_length(SMUGGLED),), SMUGGLED), id="options"
        ),
        pytest.param(
            request_bytes("DELETE", "/status", (_length(SMUGGLED),), SMUGGLED), id="delete"
        ),
        pytest.param(request_bytes("POST", "/status", (_length(SMUGGLED),), SMUGGLED), id="post"),
    ],
)
def test_no_body_smuggles_a_request_past_the_gate(
    gateways_to_ignoring: tuple[Server, Server, Server], first: bytes
) -> None:
    default, allowing, upstream = gateways_to_ignoring
    for gateway in (default, allowing):
        method = first.split(b" ", 1)[0].decode()
        _no_export(_attack(gateway.port, first, method), upstream)


def test_head_and_trace_bodies_are_refused(gateways_to_ignoring: tuple[Server, ...]) -> None:
    default, _, upstream = gateways_to_ignoring
    for method in ("HEAD", "TRACE", "GET", "OPTIONS"):
        with RawConnection(default.port) as conn:
            answer = conn.request(method, "/status", (_length(SMUGGLED),), SMUGGLED)
            assert answer.status == 400, (method, answer)
    assert "SEEN GET /reports/export" not in upstream.log()


def test_bodyless_requests_pass(gateways_to_ignoring: tuple[Server, ...]) -> None:
    default, _, _ = gateways_to_ignoring
    with RawConnection(default.port) as conn:
        assert conn.request("GET", "/status", ("Content-Length: 0",)).status == 200
        assert conn.request("GET", "/status").status == 200
        assert conn.request("HEAD", "/status").status == 200


def test_a_get_body_is_forwarded_when_allowed(gateways_to_ignoring: tuple[Server, ...]) -> None:
    _, allowing, upstream = gateways_to_ignoring
    answers = _attack(allowing.port, _smuggling_get())
    assert answers[0].status == 200
    _no_export(answers, upstream)


def test_pipelined_requests_behind_a_body(gateways_to_ignoring: tuple[Server, ...]) -> None:
    """Everything in one write: the body's bytes are never a request, at either hop."""
    for gateway in gateways_to_ignoring[:2]:
        with RawConnection(gateway.port) as conn:
            conn.send(
                _smuggling_get()
                + request_bytes("GET", "/status")
                + request_bytes("POST", "/status", (_length(SMUGGLED),), SMUGGLED)
                + request_bytes("GET", "/status")
            )
            answers = []
            try:
                for _ in range(4):
                    answers.append(conn.read_response())
            except Closed:
                pass  # a gateway may close after refusing a body it did not read
        assert answers
        _no_export(answers, gateways_to_ignoring[2])


def test_the_upstream_really_ignores_bodies() -> None:
    """The test upstream is the hazard it stands for: straight to it, the body is a request."""
    for upstream in _ignoring_upstream():
        answers = _attack(upstream.port, _smuggling_get())
        assert any(CSV_MARK in a.body for a in answers)
        assert "SEEN GET /reports/export" in upstream.log()
