"""One table of field limits (``flask_licensechain.field_limits``): the endpoints, the store
and the OpenAPI document all enforce or publish the same numbers, and a license at every
limit still gets a token that the gates accept."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from issuer_support import Issuer, close_issuer, error_body, make_issuer

from flask_licensechain import field_limits as limits
from flask_licensechain.api.openapi import openapi_document
from flask_licensechain.core.errors import InvalidRequest


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    yield made
    close_issuer(made)


def _features(count: int, length: int) -> list[str]:
    return [f"{i:03d}".ljust(length, "f") for i in range(count)]


def _email(length: int) -> str:
    domain = "example.test"
    return "u" * (length - len(domain) - 1) + "@" + domain


def test_a_license_at_every_limit_gets_a_token_the_gate_accepts(issuer: Issuer) -> None:
    app_id = issuer.new_app(tier="enterprise").id
    body = {
        "plan": "p" * limits.PLAN,
        "issuedTo": "n" * limits.ISSUED_TO,
        "issuedEmail": _email(limits.EMAIL),
        "features": _features(limits.FEATURES, limits.FEATURE),
        "maxDevices": limits.MAX_DEVICES,
    }
    created = issuer.post(f"/v1/apps/{app_id}/licenses", body, headers=issuer.auth())
    assert created.status_code == 201, created.get_json()
    hwuid = "h" * limits.HWUID
    token = issuer.token_for(created.get_json()["key"], hwuid=hwuid, app_id=app_id)
    assert len(token) <= issuer.state.settings.max_token_bytes
    claims = issuer.state.verifier.verify(token)  # what every gate runs
    assert set(claims.features) == set(body["features"])
    assert issuer.introspect(token)["active"] is True


def _schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def _license_create(document: dict[str, Any]) -> dict[str, Any]:
    post = document["paths"]["/v1/apps/{appId}/licenses"]["post"]
    ref: str = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return _schema(document, ref.rsplit("/", 1)[1])


def _max_length(schema: dict[str, Any]) -> int:
    for option in schema.get("anyOf", [schema]):
        if "maxLength" in option:
            return int(option["maxLength"])
    raise AssertionError(schema)


#: field -> (API body member, a value one past the limit, the store's keyword argument,
#: the limit as the OpenAPI document publishes it)
OVER: dict[str, tuple[str, Any, str, Callable[[dict[str, Any]], int]]] = {
    "features": (
        "features",
        _features(limits.FEATURES + 1, 8),
        "features",
        lambda s: int(s["properties"]["features"]["maxItems"]),
    ),
    "feature": (
        "features",
        _features(1, limits.FEATURE + 1),
        "features",
        lambda s: _max_length(s["properties"]["features"]["items"]),
    ),
    "plan": (
        "plan",
        "p" * (limits.PLAN + 1),
        "plan",
        lambda s: _max_length(s["properties"]["plan"]),
    ),
    "issued_to": (
        "issuedTo",
        "n" * (limits.ISSUED_TO + 1),
        "issued_to",
        lambda s: _max_length(s["properties"]["issuedTo"]),
    ),
    "email": (
        "issuedEmail",
        _email(limits.EMAIL + 1),
        "issued_email",
        lambda s: _max_length(s["properties"]["issuedEmail"]),
    ),
    "max_devices": (
        "maxDevices",
        limits.MAX_DEVICES + 1,
        "max_devices",
        lambda s: int(s["properties"]["maxDevices"]["maximum"]),
    ),
}
LIMIT_OF = {
    "features": limits.FEATURES,
    "feature": limits.FEATURE,
    "plan": limits.PLAN,
    "issued_to": limits.ISSUED_TO,
    "email": limits.EMAIL,
    "max_devices": limits.MAX_DEVICES,
}


@pytest.mark.parametrize("field", sorted(OVER))
def test_endpoint_store_and_openapi_share_each_license_limit(issuer: Issuer, field: str) -> None:
    member, value, keyword, published = OVER[field]
    app_id = issuer.new_app().id
    before = issuer.snapshot()
    response = issuer.post(f"/v1/apps/{app_id}/licenses", {member: value}, headers=issuer.auth())
    error_body(response, 400, "invalid_request")
    with pytest.raises(InvalidRequest):
        issuer.store.licenses.create(app_id, **{keyword: value})
    assert issuer.snapshot() == before
    assert published(_license_create(openapi_document())) == LIMIT_OF[field]


def test_endpoint_store_and_openapi_share_the_page_size(issuer: Issuer) -> None:
    over = limits.PAGE_SIZE + 1
    response = issuer.client.get(f"/v1/licenses?limit={over}", headers=issuer.auth())
    error_body(response, 400, "invalid_request")
    assert (
        issuer.client.get(
            f"/v1/licenses?limit={limits.PAGE_SIZE}", headers=issuer.auth()
        ).status_code
        == 200
    )
    with pytest.raises(InvalidRequest):
        issuer.store.licenses.list(limit=over)
    parameters = openapi_document()["paths"]["/v1/licenses"]["get"]["parameters"]
    limit = next(p for p in parameters if p.get("name") == "limit")
    assert limit["schema"]["maximum"] == limits.PAGE_SIZE


def test_app_limits_are_shared(issuer: Issuer) -> None:
    too_long = {"name": "n" * (limits.NAME + 1)}
    error_body(issuer.post("/v1/apps", too_long, headers=issuer.auth()), 400, "invalid_request")
    with pytest.raises(InvalidRequest):
        issuer.store.apps.create(too_long["name"])
    schema = _schema(openapi_document(), "AppCreate")
    assert _max_length(schema["properties"]["name"]) == limits.NAME
    assert _max_length(schema["properties"]["description"]) == limits.DESCRIPTION
