"""Underscore spellings of the headers the gateway manages, against real gateway processes
(gunicorn and uvicorn) in front of a real WSGI upstream that reads ``_`` as ``-``.

A client must not reach the upstream with its own ``X_Real_IP``, ``X_Forwarded_Host``,
``X_Forwarded_For`` or identity headers, nor pick its rate-limit bucket with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from gateway_support.gateway_config import write_config
from gateway_support.processes import Server, gateway_server, wsgi_upstream_server
from gateway_support.raw import get
from gateway_support.tokens import TestIssuer

pytestmark = pytest.mark.slow

RULES = """
[[rules]]
path = "/public/**"
public = true

[[rules]]
path = "/limited/**"
public = true
rate_limit = "2/minute"
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    with wsgi_upstream_server() as server:
        yield server


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def gateway(
    request: pytest.FixtureRequest, upstream: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("gw")
    issuer = TestIssuer(directory)
    config = write_config(
        directory,
        upstream=upstream.url,
        jwks_file=issuer.jwks_file,
        rules=RULES,
        gate='trusted_proxies = ["127.0.0.1/32"]',
    )
    with gateway_server(config, server=request.param) as server:
        yield server


FORGED = {
    "X_Real_IP": "6.6.6.6",
    "X_Forwarded_Host": "evil.example",
    "X_Forwarded_Proto": "gopher",
    "X_Forwarded_For": "6.6.6.7",
    "X_License_Subject": "lic_forged",
    "x_license_features": "everything",
    "X_REQUEST_ID": "forged-id",
}


def test_underscore_spellings_never_reach_a_wsgi_upstream(gateway: Server) -> None:
    response = get(gateway.port, "/public/x", {**FORGED, "X-Request-ID": "req-ok"})
    assert response.status == 200, response.everything[:500]
    seen = response.json()
    text = json.dumps(seen)
    for forged in FORGED.values():
        assert forged not in text, seen
    assert seen["HTTP_X_FORWARDED_HOST"] == "127.0.0.1"
    assert seen["HTTP_X_FORWARDED_PROTO"] == "http"
    assert seen["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert "HTTP_X_REAL_IP" not in seen
    assert "HTTP_X_LICENSE_SUBJECT" not in seen
    assert seen["HTTP_X_REQUEST_ID"] == "req-ok"


def test_underscore_forwarded_for_does_not_choose_the_client(gateway: Server) -> None:
    # The peer (loopback) is a trusted proxy: its X-Forwarded-For is believed, the
    # underscore twin never, however the client varies it.
    statuses = []
    for i in range(3):
        headers = {"X-Forwarded-For": "1.1.1.1", "X_Forwarded_For": f"6.6.6.{i}"}
        response = get(gateway.port, "/limited/x", headers)
        statuses.append(response.status)
        if response.status == 200:
            assert response.json()["HTTP_X_FORWARDED_FOR"] == "1.1.1.1"
    assert statuses == [200, 200, 429]
