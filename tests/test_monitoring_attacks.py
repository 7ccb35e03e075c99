"""Attacks on the monitoring (``flask_licensechain/monitoring/``): the request hooks count
and log every answer, so a failure of theirs (a metrics file that cannot be written, a log
handler that raises) must neither turn a customer's answer into a 500 nor strip the
security headers of the response."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, NoReturn

import pytest
from flask import Flask
from gate_support import admin_headers, issuer_app_with

from flask_licensechain import get_state
from flask_licensechain.monitoring import access_log, metrics

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _app(tmp_path: Path, **config: Any) -> Flask:
    app = issuer_app_with(tmp_path, gated=False, **config)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production
    return app


def _broken(*args: Any, **kwargs: Any) -> NoReturn:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    "target, name",
    [
        (metrics, "count_request"),
        (metrics, "update_denylist_gauges"),
        (access_log, "log_request"),
    ],
)
def test_a_failing_monitoring_hook_keeps_the_answer_and_its_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Any, name: str
) -> None:
    app = _app(tmp_path, LICENSECHAIN_METRICS_ENABLED=True, LICENSECHAIN_ACCESS_LOG=True)
    monkeypatch.setattr(target, name, _broken)
    client = app.test_client()
    for path, status in (("/v1/health", 200), ("/v1/no-such-route", 404)):
        response = client.get(path)
        assert response.status_code == status, (path, response.status_code)
        for header, value in EXPECTED.items():
            assert response.headers.get(header) == value, (path, header)


class _BrokenCounter:
    def labels(self, *values: str) -> NoReturn:
        raise OSError(28, "No space left on device")


def test_a_failing_revocation_count_neither_fails_the_revocation_nor_its_announcement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A committed change's listeners (the revocation counter) and callbacks (the denylist
    announcement) run after the commit: one failing must not answer 500 for a change that
    happened, nor skip the announcement that makes the revocation take effect."""
    app = _app(tmp_path, LICENSECHAIN_METRICS_ENABLED=True)
    state = get_state(app)
    store = state.store
    assert store is not None
    seller = store.apps.create("Attack " + secrets.token_hex(3), tier="pro")
    lic = store.licenses.create(seller.id)
    published: list[Any] = []
    real_publish = state.denylist.publish

    def publish(batch: Any) -> None:
        published.append(batch)
        real_publish(batch)

    monkeypatch.setattr(state.denylist, "publish", publish)
    monkeypatch.setattr(metrics, "REVOCATIONS", _BrokenCounter())
    response = app.test_client().patch(
        f"/v1/licenses/{lic.id}/suspend", json={}, headers=admin_headers(app, "*")
    )
    assert response.status_code == 200, response.get_json()
    assert published, "the suspension was never announced to the denylist"


def test_a_failing_verification_count_keeps_the_verify_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, LICENSECHAIN_METRICS_ENABLED=True)
    store = get_state(app).store
    assert store is not None
    lic = store.licenses.create(store.apps.create("Attack verify", tier="pro").id)
    monkeypatch.setattr(metrics, "count_verification", _broken)
    response = app.test_client().post("/v1/licenses/verify", json={"key": lic.key})
    assert response.status_code == 200 and response.get_json()["valid"] is True
