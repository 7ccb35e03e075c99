"""The /v1 views are plain module-level functions on one blueprint: importable, callable in a
request context one by one, and reading only their own app's state (several issuer apps in
one process keep apart, caches included)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Response
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain import api
from flask_licensechain.api import bp
from flask_licensechain.api.public import health, jwks


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Issuer, Issuer]]:
    first = make_issuer(tmp_path / "one")
    second = make_issuer(tmp_path / "two", url_prefix="/licensing")
    yield first, second
    close_issuer(first)
    close_issuer(second)


def test_every_route_is_a_module_level_function(two: tuple[Issuer, Issuer]) -> None:
    app = two[0].app
    endpoints = [rule.endpoint for rule in app.url_map.iter_rules()]
    ours = [e for e in endpoints if e.startswith(bp.name + ".")]
    assert len(ours) >= 20
    for endpoint in ours:
        view = app.view_functions[endpoint]
        module = importlib.import_module(view.__module__)
        assert getattr(module, view.__name__) is view, endpoint
        assert module.__name__.startswith(api.__name__ + ".")
    # The same function objects serve the second app: one blueprint, no per-app closures.
    assert two[1].app.view_functions[ours[0]] is app.view_functions[ours[0]]


def test_a_view_runs_on_its_own_in_a_request_context(two: tuple[Issuer, Issuer]) -> None:
    issuer = two[0]
    with issuer.app.test_request_context("/v1/health"):
        response = health()
    assert isinstance(response, Response)
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_each_app_reads_its_own_state_and_caches(two: tuple[Issuer, Issuer]) -> None:
    first, second = two
    kid_one = first.client.get("/v1/licenses/jwks").get_json()["keys"][0]["kid"]
    kid_two = second.client.get("/licensing/licenses/jwks").get_json()["keys"][0]["kid"]
    assert kid_one != kid_two  # each app has its own key ring and its own JWKS cache
    with second.app.test_request_context("/licensing/licenses/jwks"):
        direct = jwks()
    assert direct.get_json()["keys"][0]["kid"] == kid_two
    assert first.state.jwks_json[1] != second.state.jwks_json[1]
    served_one = first.client.get("/v1/openapi.json").get_json()
    served_two = second.client.get("/licensing/openapi.json").get_json()
    assert "/v1/licenses/verify" in served_one["paths"]
    assert "/licensing/licenses/verify" in served_two["paths"]
    # A license of one app's store is unknown to the other.
    lic = first.new_license()
    assert first.verify(key=lic.key).get_json()["valid"] is True
    other = second.client.post("/licensing/licenses/verify", json={"key": lic.key})
    assert other.get_json() == {"valid": False, "reason": "license_not_found"}
    # Routing errors get the contract body, under each prefix and (every path answers JSON)
    # outside it too.
    assert first.client.get("/v1/nope").get_json()["error"] == "not_found"
    assert second.client.get("/licensing/nope").get_json()["error"] == "not_found"
    assert second.client.get("/v1/nope").get_json()["error"] == "not_found"
