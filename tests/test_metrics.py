"""Prometheus metrics of the license server, in one process (monitoring/metrics.py, setup.py).

- Never public by default: no path and no port serves them unless configured.
- ``LICENSECHAIN_METRICS_PATH``: 401 without a key, 403 for a key without ``metrics:read``
  (both in the API's JSON error shape), the Prometheus text for a key with it.
- What is counted: requests by route template (never a license key from the path) and
  status, latency histograms, verifications by outcome and reason, tokens issued, admin
  API 401/403 answers, revocations recorded through a unit of work, the denylist state.
- ``LICENSECHAIN_METRICS_PORT`` serves on 127.0.0.1 only, without credentials.
- Metrics off (the default): nothing is counted.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port
from flask import Flask
from gate_support import admin_headers, issuer_app_with
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from flask_licensechain import get_state
from flask_licensechain.store import Change
from flask_licensechain.store.changes import SYSTEM

VERIFY_ROUTE = "/v1/licenses/verify"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _app(tmp_path: Path, **config: Any) -> Flask:
    return issuer_app_with(tmp_path, gated=False, **config)


def _license(app: Flask) -> Any:
    store = get_state(app).store
    assert store is not None
    seller = store.apps.create("Metrics " + secrets.token_hex(3), tier="pro")
    return store.licenses.create(seller.id)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def test_not_served_by_default(tmp_path: Path) -> None:
    app = _app(tmp_path)
    headers = admin_headers(app, "*")
    assert app.test_client().get("/metrics", headers=headers).status_code == 404
    state = get_state(app)
    assert state.monitoring is not None and state.monitoring.metrics is False
    before = _value("licensechain_verifications_total", outcome="valid", reason="none")
    app.test_client().post("/v1/licenses/verify", json={"key": _license(app).key})
    assert _value("licensechain_verifications_total", outcome="valid", reason="none") == before


def test_the_path_needs_the_metrics_scope(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_METRICS_PATH="/metrics")
    client = app.test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.get_json()["error"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers=admin_headers(app, "licenses:read"))
    assert wrong.status_code == 403
    assert wrong.get_json()["error"] == "insufficient_scope"
    ok = client.get("/metrics", headers=admin_headers(app, "metrics:read"))
    assert ok.status_code == 200
    assert ok.content_type.startswith("text/plain")
    assert b"licensechain_http_requests_total" in ok.data


def test_what_is_counted(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_METRICS_PATH="/internal/metrics")
    client = app.test_client()
    lic = _license(app)
    suspended = _license(app)
    get_state(app).store.licenses.set_status(suspended.id, "SUSPENDED")  # type: ignore[union-attr]
    before = {
        "valid": _value("licensechain_verifications_total", outcome="valid", reason="none"),
        "suspended": _value(
            "licensechain_verifications_total", outcome="invalid", reason="license_suspended"
        ),
        "tokens": _value("licensechain_tokens_issued_total"),
        "requests": _value(
            "licensechain_http_requests_total", endpoint=VERIFY_ROUTE, method="POST", status="200"
        ),
        "latency": _value(
            "licensechain_http_request_duration_seconds_count", endpoint=VERIFY_ROUTE
        ),
        "401": _value("licensechain_auth_failures_total", status="401"),
        "403": _value("licensechain_auth_failures_total", status="403"),
        "public_404": _value("licensechain_auth_failures_total", status="404"),
    }
    for _ in range(3):
        answer = client.post(VERIFY_ROUTE, json={"key": lic.key}).get_json()
        assert answer["valid"] is True
    # introspect checks the denylist: its copy of the store is loaded (the synced gauge)
    token = answer["license_token"]
    assert client.post("/v1/licenses/introspect", json={"token": token}).get_json()["active"]
    for _ in range(2):
        client.post(VERIFY_ROUTE, json={"key": suspended.key})
    assert client.get("/v1/apps").status_code == 401
    assert (
        client.get("/v1/apps", headers={"Authorization": "Bearer lc_live_nope"}).status_code == 401
    )
    assert client.get("/v1/apps", headers=admin_headers(app, "licenses:read")).status_code == 403
    reader = admin_headers(app, "licenses:read")
    assert client.get(f"/v1/licenses/{lic.key}", headers=reader).status_code == 200

    assert (
        _value("licensechain_verifications_total", outcome="valid", reason="none")
        == before["valid"] + 3
    )
    assert (
        _value("licensechain_verifications_total", outcome="invalid", reason="license_suspended")
        == before["suspended"] + 2
    )
    assert _value("licensechain_tokens_issued_total") == before["tokens"] + 3
    assert (
        _value(
            "licensechain_http_requests_total", endpoint=VERIFY_ROUTE, method="POST", status="200"
        )
        == before["requests"] + 5
    )
    assert (
        _value("licensechain_http_request_duration_seconds_count", endpoint=VERIFY_ROUTE)
        == before["latency"] + 5
    )
    assert _value("licensechain_auth_failures_total", status="401") == before["401"] + 2
    assert _value("licensechain_auth_failures_total", status="403") == before["403"] + 1

    text = client.get("/internal/metrics", headers=admin_headers(app, "metrics:read")).text
    assert lic.key not in text  # the license route is counted by its template
    samples = _samples(text)
    route = frozenset(
        {("endpoint", "/v1/licenses/<lc_license:ref>"), ("method", "GET"), ("status", "200")}
    )
    assert samples[("licensechain_http_requests_total", route)] >= 1
    assert samples[("licensechain_denylist_synced", frozenset())] == 1.0
    assert samples[("licensechain_denylist_store_sequence", frozenset())] >= 0
    assert ("licensechain_denylist_entries", frozenset()) in samples


def test_revocations_recorded_through_a_unit_of_work_are_counted(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_METRICS_ENABLED=True)
    store = get_state(app).store
    assert store is not None
    before = _value("licensechain_revocations_total", action="license.revoke")
    other = _value("licensechain_revocations_total", action="license.update")
    with store.unit_of_work(SYSTEM) as unit:  # as the service layer records a revocation
        unit.record(Change(action="license.revoke", target="lic_x"))
        unit.record(Change(action="license.update", target="lic_x"))
    assert _value("licensechain_revocations_total", action="license.revoke") == before + 1
    assert _value("licensechain_revocations_total", action="license.update") == other


def test_the_port_serves_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    app = _app(tmp_path, LICENSECHAIN_METRICS_PORT=port)
    app.test_client().post(VERIFY_ROUTE, json={"key": _license(app).key})
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    assert "licensechain_verifications_total" in answer.text
    # 127.0.0.2 is loopback too, but a socket bound to 127.0.0.1 does not accept there:
    # it would if the server listened on every address.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LICENSECHAIN_METRICS_PATH", "metrics"),
        ("LICENSECHAIN_METRICS_PATH", "/metrics?x=1"),
        ("LICENSECHAIN_METRICS_PORT", "0"),
        ("LICENSECHAIN_METRICS_PORT", "70000"),
        ("LICENSECHAIN_METRICS_PORT", "http"),
        ("LICENSECHAIN_SIGNALS_STORAGE_URL", "redis+cluster://h:1"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path: Path, key: str, value: str) -> None:
    from flask_licensechain.core.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        _app(tmp_path, **{key: value})
