"""The OpenAPI document is valid, complete, and true: schemathesis finds no response that
breaks it.

schemathesis drives the app in-process (WSGI) with generated requests, valid and invalid,
authenticated with an admin API key. Half of the cases get a real app id, license id, key,
hardware id or token planted in them, so the success answers are checked too, not only
the 404s that random ids get. Checks: no 5xx, every status code documented, every body,
content type and header as documented, and the client's sane X-Request-ID echoed. The run
is derandomized, so it is reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from issuer_support import Issuer, close_issuer, make_issuer
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from webhooks_support import socket_guard

from flask_licensechain.api.openapi import openapi_document
from flask_licensechain.services import webhooks as webhooks_service
from flask_licensechain.store import Actor
from flask_licensechain.webhooks import ssrf
from flask_licensechain.webhooks.ssrf import DestinationPolicy

SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def request_id_is_echoed(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer carries X-Request-ID: the client's when it is sane, else a new one."""
    sent = {k.lower(): v for k, v in (case.headers or {}).items()}.get("x-request-id")
    [got] = response.headers.get("x-request-id", [""])
    assert got, "no X-Request-ID in the response"
    if isinstance(sent, str) and SANE_REQUEST_ID.fullmatch(sent):
        assert got == sent, f"X-Request-ID {sent!r} came back as {got!r}"
    else:
        assert SANE_REQUEST_ID.fullmatch(got), f"generated X-Request-ID {got!r} is not sane"
    return None


CHECKS = [
    request_id_is_echoed,
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Per operation; 30 operations. Enough to walk every documented branch, quick enough to run
#: on every change.
MAX_EXAMPLES = 25
#: Huge limits: the rate-limit headers are present and checked, but no case is refused.
HUGE_LIMITS = "1000000/second"

#: Every endpoint of the wire contract (plus the document itself and API-key creation).
CONTRACT_OPERATIONS = {
    ("post", "/v1/licenses/verify"),
    ("post", "/v1/licenses/validate-hardware"),
    ("get", "/v1/licenses/jwks"),
    ("post", "/v1/licenses/introspect"),
    ("get", "/v1/health"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/licenses/revoke-token"),
    ("post", "/v1/apps"),
    ("get", "/v1/apps"),
    ("get", "/v1/apps/{appId}"),
    ("post", "/v1/apps/{appId}/licenses"),
    ("get", "/v1/apps/{appId}/licenses"),
    ("get", "/v1/licenses"),
    ("get", "/v1/licenses/{license}"),
    ("patch", "/v1/licenses/{license}"),
    ("patch", "/v1/licenses/{licenseId}/revoke"),
    ("patch", "/v1/licenses/{licenseId}/suspend"),
    ("patch", "/v1/licenses/{licenseId}/activate"),
    ("patch", "/v1/licenses/{licenseId}/extend"),
    ("delete", "/v1/licenses/{licenseId}/devices/{hwuid}"),
    ("post", "/v1/signing-keys/rotate"),
    ("post", "/v1/api-keys"),
    ("post", "/v1/customers/export"),
    ("post", "/v1/customers/erase"),
    ("get", "/v1/api-keys"),
    ("get", "/v1/api-keys/{keyId}"),
    ("patch", "/v1/api-keys/{keyId}"),
    ("post", "/v1/api-keys/{keyId}/revoke"),
    ("post", "/v1/api-keys/{keyId}/rotate"),
    # LicenseChain's clients: status through update, PUT, DELETE, stats, analytics, apps
    ("put", "/v1/licenses/{license}"),
    ("delete", "/v1/licenses/{license}"),
    ("patch", "/v1/licenses/{licenseId}/status"),
    ("get", "/v1/licenses/stats"),
    ("get", "/v1/licenses/{licenseId}/analytics"),
    ("get", "/v1/analytics/stats"),
    ("get", "/v1/analytics/usage"),
    ("delete", "/v1/licenses/{licenseId}/devices"),
    ("patch", "/v1/apps/{appId}"),
    ("delete", "/v1/apps/{appId}"),
    ("post", "/v1/apps/{appId}/regenerate-key"),
    ("get", "/v1/audit-events"),
    ("get", "/health"),
    # webhooks (issue 12)
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks"),
    ("get", "/v1/webhooks/{webhookId}"),
    ("patch", "/v1/webhooks/{webhookId}"),
    ("put", "/v1/webhooks/{webhookId}"),
    ("delete", "/v1/webhooks/{webhookId}"),
    ("post", "/v1/webhooks/{webhookId}/test"),
    ("get", "/v1/webhooks/{webhookId}/deliveries"),
    ("post", "/v1/webhooks/{webhookId}/deliveries/{deliveryId}/retry"),
    ("post", "/v1/webhooks/{webhookId}/rotate-secret"),
    # CORS preflight of the public endpoints
    ("options", "/v1/licenses/verify"),
    ("options", "/v1/licenses/validate-hardware"),
    ("options", "/v1/licenses/jwks"),
    ("options", "/v1/licenses/introspect"),
    ("options", "/v1/health"),
    ("options", "/health"),
}


class Planted:
    """Real objects to plant into generated cases."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.app = issuer.new_app(tier="business", name="Schemathesis App")
        lic = issuer.new_license(self.app.id, features=["export"], max_devices=3)
        self.license_id = lic.id
        self.license_key = lic.key
        self.hwuid = "machine-1"
        self.token = issuer.token_for(lic.key, hwuid=self.hwuid)
        self.key_id = ""
        self.fresh_api_key()
        self.fresh_webhook()

    def fresh_api_key(self) -> None:
        """An API key for the ``{keyId}`` routes (not the admin key: they may revoke it)."""
        record, _ = self.issuer.store.api_keys.create("planted", ["apps:read"])
        self.key_id = record.id

    def fresh_webhook(self) -> None:
        """A webhook (to a name the stubbed resolver refuses) with one dead delivery."""
        runtime = self.issuer.state.webhooks
        created = webhooks_service.create_endpoint(
            DestinationPolicyBypass(runtime),  # type: ignore[arg-type]
            Actor(kind="cli", id="schemathesis"),
            url="https://hooks.example.com/planted",
            events=None,
            app_id=None,
        )
        self.webhook_id = created.endpoint.id
        delivery, _ = webhooks_service.send_test(runtime, created.endpoint)
        self.delivery_id = str(delivery.id)

    def fresh_license(self) -> None:
        """A new license when the planted one was revoked (no way back from REVOKED)."""
        lic = self.issuer.new_license(self.app.id, features=["export"], max_devices=3)
        self.license_id, self.license_key = lic.id, lic.key
        self.token = self.issuer.token_for(lic.key, hwuid=self.hwuid)

    def plant(self, case: Any) -> None:
        if self.issuer.store.apps.get(self.app.id) is None:  # DELETE /apps/{appId} ran
            self.app = self.issuer.new_app(tier="business", name="Schemathesis App")
            self.fresh_license()
        if self.issuer.store.licenses.get(self.license_id).status == "REVOKED":
            self.fresh_license()
        if self.issuer.store.api_keys.get(self.key_id).revoked:
            self.fresh_api_key()
        if self.issuer.store.webhooks.get_endpoint(self.webhook_id) is None:
            self.fresh_webhook()
        query = case.query or {}
        if "hwuid" in query:
            query["hwuid"] = self.hwuid
        params = case.path_parameters or {}
        for name, value in (
            ("appId", self.app.id),
            ("licenseId", self.license_id),
            ("license", self.license_id),
            ("hwuid", self.hwuid),
            ("keyId", self.key_id),
            ("webhookId", self.webhook_id),
            ("deliveryId", self.delivery_id),
        ):
            if name in params:
                params[name] = value
        body = case.body
        if isinstance(body, dict):
            for name, value in (
                ("key", self.license_key),
                ("licenseKey", self.license_key),
                ("license_key", self.license_key),
                ("app_id", self.app.id),
                ("appId", self.app.id),
                ("license_token", self.token),
                ("token", self.token),
                ("hwuid", self.hwuid),
                ("hardwareId", self.hwuid),
                ("appIds", [self.app.id]),
                ("app_ids", [self.app.id]),
            ):
                if name in body:
                    body[name] = value


class DestinationPolicyBypass:
    """The webhook runtime with a policy that accepts the planted URL at creation (the
    stubbed resolver refuses every name, so nothing is ever sent)."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self.policy = DestinationPolicy(resolver=lambda host, port: ["93.184.215.14"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)


def _refuse_every_name(host: str, port: int) -> list[str]:
    raise ssrf.DestinationRefused(f"{host}: no DNS in tests")


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Generated webhook URLs never resolve, and no socket reaches past loopback."""
    monkeypatch.setattr(ssrf, "resolve", _refuse_every_name)
    with socket_guard(strict=False):
        yield


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(
        tmp_path,
        ratelimit_enabled=True,
        ratelimit_per_ip=HUGE_LIMITS,
        ratelimit_per_key=HUGE_LIMITS,
        api_key_failure_limit=HUGE_LIMITS,
    )
    try:
        yield made
    finally:
        close_issuer(made)


@pytest.fixture
def planted(issuer: Issuer) -> Planted:
    return Planted(issuer)


def _operations() -> list[tuple[str, str]]:
    return sorted(CONTRACT_OPERATIONS, key=lambda op: (op[1], op[0]))


@pytest.mark.parametrize(
    ("method", "path"), _operations(), ids=[f"{m.upper()} {p}" for m, p in _operations()]
)
def test_operation_conforms_to_the_document(
    method: str, path: str, issuer: Issuer, planted: Planted
) -> None:
    # The schema as the app serves it, driven in-process through its WSGI callable.
    loaded = schemathesis.openapi.from_wsgi("/v1/openapi.json", issuer.app)
    operation = loaded[path][method.upper()]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    auth = issuer.auth()

    @given(case=cases, plant=st.booleans())
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: Any, plant: bool) -> None:
        if plant:
            planted.plant(case)
        case.call_and_validate(headers=auth, checks=CHECKS)

    exercise()


# -- the document itself ------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    document = openapi_document("/v1")
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_document_describes_every_contract_endpoint() -> None:
    paths = openapi_document("/v1")["paths"]
    documented = {(method, path) for path, item in paths.items() for method in item}
    assert documented == CONTRACT_OPERATIONS


def test_every_route_of_the_blueprint_is_documented(issuer: Issuer) -> None:
    """No endpoint escapes the document (and so the schemathesis run)."""
    documented = _documented_rules(openapi_document("/v1"))
    served = _served_rules(issuer.app, "/v1")
    assert served == documented


def test_document_follows_the_prefix() -> None:
    paths = openapi_document("/api/v2/")["paths"]
    assert "/api/v2/licenses/verify" in paths
    assert not [p for p in paths if not p.startswith("/api/v2/") and p != "/health"]
    at_root = openapi_document("/")["paths"]
    assert "/licenses/verify" in at_root and "/health" in at_root  # the API's own /health


def test_served_document_is_the_module_document(issuer: Issuer) -> None:
    response = issuer.client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["X-Request-ID"]
    assert response.get_json() == openapi_document("/v1")


def test_every_error_response_names_its_contract_code() -> None:
    document = openapi_document("/v1")
    expected = {
        "400": "invalid_request",
        "401": "unauthorized",
        "403": "insufficient_scope",
        "404": "not_found",
        "409": "conflict",
        "413": "payload_too_large",
        "415": "unsupported_media_type",
        "429": "rate_limited",
        "503": "unavailable",
    }
    for path, item in document["paths"].items():
        if path.endswith("/health"):
            continue  # its 503 is the degraded health body, not an error
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status in expected:
                    assert response == {"$ref": f"#/components/responses/{expected[status]}"}, (
                        path,
                        status,
                    )
            admin = operation["security"] != []
            if admin:
                assert {"401", "403"} <= set(operation["responses"]), path
    retry = document["components"]["responses"]["rate_limited"]["headers"]
    assert "Retry-After" in retry


def _documented_rules(document: dict[str, Any]) -> set[tuple[str, str]]:
    rules = set()
    for path, item in document["paths"].items():
        shape = "/".join("<>" if part.startswith("{") else part for part in path.split("/"))
        rules |= {(method.upper(), shape) for method in item if method != "options"}
    return rules


def _served_rules(app: Flask, prefix: str) -> set[tuple[str, str]]:
    """Every rule of the extension's blueprints (the API's, and the root /health)."""
    rules = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(("licensechain.", "licensechain_root.")):
            continue
        shape = "/".join("<>" if part.startswith("<") else part for part in rule.rule.split("/"))
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        rules |= {(method, shape) for method in methods}
    return rules
