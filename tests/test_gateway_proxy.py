"""The gateway as real processes: an upstream under uvicorn, the gateway under gunicorn
(WSGI) and under uvicorn (ASGI), exercised over HTTP from the outside."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support.gateway_config import write_config
from gateway_support.processes import Server, gateway_server, upstream_server
from gateway_support.raw import get, raw_request
from gateway_support.tokens import TestIssuer

pytestmark = pytest.mark.slow

SERVERS = ["gunicorn", "uvicorn"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    with upstream_server() as server:
        yield server


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module", params=SERVERS)
def gateway(
    request: pytest.FixtureRequest,
    upstream: Server,
    issuer: TestIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    config = write_config(
        tmp_path_factory.mktemp("gw"), upstream=upstream.url, jwks_file=issuer.jwks_file
    )
    with gateway_server(config, server=request.param) as server:
        yield server


def metric(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


def echo(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def header_values(data: dict[str, object], name: str) -> list[str]:
    headers = data["headers"]
    assert isinstance(headers, list)
    return [v for k, v in headers if k.lower() == name.lower()]


# -- what passes through unchanged ------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_method_path_and_query_are_preserved(gateway: Server, method: str) -> None:
    # GET and OPTIONS take no body at the gateway (test_gateway_body_smuggling.py).
    content = b"" if method in ("GET", "OPTIONS") else b"abc" * 10
    response = httpx.request(method, f"{gateway.url}/public/a%20b/c?x=1&x=2&y=%2F", content=content)
    data = echo(response)
    assert data["method"] == method
    assert data["raw_path"] == "/public/a%20b/c"
    assert data["query"] == "x=1&x=2&y=%2F"
    assert data["body_bytes"] == len(content)


def test_head_gets_the_headers_and_no_body(gateway: Server) -> None:
    response = httpx.head(f"{gateway.url}/public/x")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


def test_several_set_cookie_headers_reach_the_client(gateway: Server, issuer: TestIssuer) -> None:
    response = httpx.get(
        f"{gateway.url}/cookies", headers={"Authorization": f"Bearer {issuer.token()}"}
    )
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_upstream_cookies_never_ride_on_another_clients_request(
    gateway: Server, issuer: TestIssuer
) -> None:
    auth = {"Authorization": f"Bearer {issuer.token()}"}
    assert httpx.get(f"{gateway.url}/cookies", headers=auth).status_code == 200
    data = echo(httpx.get(f"{gateway.url}/public/after-cookies"))
    assert header_values(data, "cookie") == []


@pytest.mark.parametrize("status", [201, 204, 301, 404, 418, 500, 503])
def test_upstream_status_is_passed_through(
    gateway: Server, issuer: TestIssuer, status: int
) -> None:
    response = httpx.get(
        f"{gateway.url}/status/{status}",
        headers={"Authorization": f"Bearer {issuer.token()}"},
    )
    assert response.status_code == status


def test_proxy_adds_no_encoding_and_states_the_forwarding(gateway: Server) -> None:
    data = echo(httpx.get(f"{gateway.url}/public/x", headers={"Accept-Encoding": "identity"}))
    assert header_values(data, "accept-encoding") == ["identity"]
    data = echo(httpx.get(f"{gateway.url}/public/x", headers={"X-Forwarded-For": "6.6.6.6"}))
    assert header_values(data, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(data, "x-forwarded-proto") == ["http"]


def test_every_response_carries_a_request_id_that_the_upstream_sees(gateway: Server) -> None:
    response = httpx.get(f"{gateway.url}/public/x", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    assert header_values(echo(response), "x-request-id") == ["req-42"]
    refused = httpx.get(f"{gateway.url}/premium/x", headers={"X-Request-ID": "bad id!"})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"] != "bad id!"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


# -- the gate in front ------------------------------------------------------------


def test_licensed_request_reaches_upstream_with_identity_and_without_token(
    gateway: Server, issuer: TestIssuer
) -> None:
    token = issuer.token(sub="lic_ident", features=("premium",), plan="pro")
    data = echo(httpx.get(f"{gateway.url}/premium/x", headers={"Authorization": f"Bearer {token}"}))
    assert header_values(data, "x-license-subject") == ["lic_ident"]
    assert header_values(data, "x-license-plan") == ["pro"]
    assert header_values(data, "authorization") == []
    assert token not in json.dumps(data)


def test_missing_feature_is_403_and_missing_token_is_401(
    gateway: Server, issuer: TestIssuer
) -> None:
    weak = issuer.token(features=("basic",))
    forbidden = httpx.get(f"{gateway.url}/premium/x", headers={"Authorization": f"Bearer {weak}"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "insufficient_scope"
    missing = httpx.get(f"{gateway.url}/premium/x")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "spoof",
    [
        {"X-License-Subject": "evil"},
        {"X_License_Subject": "evil"},
        {"X-License-Subject": "evil", "Connection": "X-License-Subject"},
        {"X-License-Features": "premium", "X-License-Plan": "evil"},
    ],
)
def test_spoofed_identity_headers_never_reach_the_upstream(
    gateway: Server, issuer: TestIssuer, spoof: dict[str, str]
) -> None:
    public = echo(httpx.get(f"{gateway.url}/public/x", headers=spoof))
    assert "evil" not in json.dumps(public["headers"])
    assert header_values(public, "x-license-features") == []
    token = issuer.token(sub="lic_real", features=("premium",))
    licensed = echo(
        httpx.get(f"{gateway.url}/premium/x", headers={**spoof, "Authorization": f"Bearer {token}"})
    )
    assert "evil" not in json.dumps(licensed["headers"])
    assert header_values(licensed, "x-license-subject") == ["lic_real"]


@pytest.mark.parametrize(
    "target",
    [
        "/public/../premium/x",
        "//premium/x",
        "/%70remium/x",
        "/premium%2F..",
        "/public%2F..%2Fpremium/x",
        "/public%23/../premium/x",
        "/public/..;/premium/x",
        "/public;a=b/../premium/x",
        "/PREMIUM/x",
        "/Premium/x",
        "/public/%2e%2e/premium/x",
    ],
)
def test_path_tricks_never_reach_a_licensed_path_without_a_license(
    gateway: Server, target: str
) -> None:
    response = get(gateway.port, target)
    assert 400 <= response.status < 500, response.head
    assert b'"error"' in response.body
    assert b"raw_path" not in response.body  # the upstream never answered


def test_dot_segments_are_normalised_and_the_matched_path_is_forwarded(
    gateway: Server, issuer: TestIssuer
) -> None:
    token = issuer.token(features=("premium",))
    response = get(gateway.port, "/public/../premium/x", {"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert response.json()["raw_path"] == "/premium/x"


# -- hostile framing ----------------------------------------------------------------


def test_content_length_with_transfer_encoding_is_refused(gateway: Server) -> None:
    smuggled = (
        b"POST /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 44\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"0\r\n\r\nGET /premium/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    response = raw_request(gateway.port, smuggled)
    assert response.status == 400
    assert b"raw_path" not in response.everything  # neither request reached the upstream
    assert response.everything.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize("query", ["x=\x7f", "x=%00%zz\x01"])
def test_a_target_that_cannot_be_forwarded_is_400_not_500(gateway: Server, query: str) -> None:
    response = get(gateway.port, f"/public/x?{query}")
    assert response.status == 400, response.head
    assert b"raw_path" not in response.body


def test_oversized_headers_are_refused_cleanly(gateway: Server) -> None:
    big = "a" * 100_000
    response = get(gateway.port, "/public/x", {"X-Big": big})
    assert response.status in (400, 431)
    many = {f"X-H{i}": "v" * 1000 for i in range(120)}
    response = get(gateway.port, "/public/x", many)
    assert response.status in (400, 431)


def test_upstream_closing_mid_body_is_a_clean_failure_not_a_hang(
    gateway: Server, issuer: TestIssuer
) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.HTTPError):
        with httpx.stream(
            "GET",
            f"{gateway.url}/broken?bytes=1000000",
            headers={"Authorization": f"Bearer {issuer.token()}"},
            timeout=10,
        ) as response:
            assert response.status_code == 200
            for _ in response.iter_raw():
                pass
    assert time.monotonic() - started < 8
    # The gateway stays healthy for the next request.
    assert httpx.get(f"{gateway.url}/public/x").status_code == 200


def test_upstream_timeout_is_504_with_a_contract_body(gateway: Server, issuer: TestIssuer) -> None:
    response = httpx.get(
        f"{gateway.url}/slow?seconds=5",
        headers={"Authorization": f"Bearer {issuer.token()}"},
        timeout=15,
    )
    assert response.status_code == 504
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == "gateway_timeout"
    assert body["request_id"] == response.headers["x-request-id"]


# -- the gateway's own endpoints ------------------------------------------------------


def test_health_ready_and_metrics(gateway: Server, issuer: TestIssuer) -> None:
    assert httpx.get(f"{gateway.url}/_licensechain/health").json() == {"status": "ok"}
    assert httpx.get(f"{gateway.url}/_licensechain/ready").json() == {"status": "ready"}
    httpx.get(f"{gateway.url}/premium/x")
    auth = {"Authorization": f"Bearer {issuer.token()}"}
    for _ in range(3):
        httpx.get(f"{gateway.url}/public/x", headers=auth)
    text = httpx.get(f"{gateway.url}/_licensechain/metrics").text
    assert metric(text, 'licensechain_gateway_token_cache_total{result="hit"}') >= 2
    assert 'licensechain_gateway_decisions_total{decision="deny",reason="token_missing"}' in text
    assert 'licensechain_gateway_decisions_total{decision="allow",reason="public"}' in text
    assert "licensechain_gateway_upstream_seconds_bucket" in text
    assert "licensechain_gateway_rate_limited_total" in text


@pytest.mark.parametrize(
    "target",
    [
        "/_licensechain/health/../../premium/x",
        "/_licensechain/healthz",
        "/_licensechain/ready/",
        "/_LICENSECHAIN/health",
    ],
)
def test_ops_paths_are_exact_and_give_no_shortcut(gateway: Server, target: str) -> None:
    response = get(gateway.port, target, {"X-Forwarded-Path": "/_licensechain/health"})
    assert response.status in (400, 401), response.head


def test_access_log_is_json_per_request_and_never_holds_the_token(
    gateway: Server, issuer: TestIssuer
) -> None:
    token = issuer.token(sub="lic_logged", features=("premium",))
    httpx.get(
        f"{gateway.url}/premium/logged",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "log-me-1"},
    )
    httpx.get(f"{gateway.url}/premium/logged", headers={"X-Request-ID": "log-me-2"})
    deadline = time.monotonic() + 5
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(lines) < 2:
        lines = [
            json.loads(line)
            for line in gateway.log().splitlines()
            if line.startswith("{") and '"log-me-' in line
        ]
        time.sleep(0.1)
    allowed, refused = sorted(lines, key=lambda line: str(line["request_id"]))
    assert allowed["sub"] == "lic_logged"
    assert allowed["decision"] == "allow"
    assert allowed["reason"] == "licensed"
    assert allowed["upstream_status"] == 200
    assert isinstance(allowed["latency_ms"], float)
    assert refused["decision"] == "deny"
    assert refused["reason"] == "token_missing"
    assert refused["upstream_status"] is None
    assert token not in gateway.log()
    assert token.split(".")[2] not in gateway.log()


def test_unreachable_upstream_is_502_with_nothing_internal(
    issuer: TestIssuer, tmp_path: Path
) -> None:
    from conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path, upstream=dead, jwks_file=issuer.jwks_file)
    with gateway_server(config, server="gunicorn") as gw:
        response = httpx.get(f"{gw.url}/public/x")
    assert response.status_code == 502
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == "bad_gateway"
    assert "127.0.0.1" not in response.text
    assert "Connect" not in response.text
