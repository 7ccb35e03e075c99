"""Metrics and signals under gunicorn with several worker processes, as in production.

One cluster (3 sync workers, ``PROMETHEUS_MULTIPROC_DIR``, signals counted in Redis):

- the counts that one scrape returns are the sum over every worker: verifications by
  outcome and reason, tokens issued, requests and latency observations of the verify route,
  admin 401s, although the requests were answered by several workers;
- failed verifications spread over the workers fire one ``failed_verifications`` anomaly
  (Redis windows and claims are shared), and the anomaly metric counts it once.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_multiprocess_server import Answer, gunicorn_cluster

pytestmark = [pytest.mark.slow, pytest.mark.redis]

VALID = 24
FAILED = 12
THRESHOLD = 8
UNAUTHORIZED = 3


def _scrape(base_url: str, key: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(
        base_url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def test_one_scrape_adds_up_every_worker(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc))
    with gunicorn_cluster(
        tmp_path,
        metrics_path="/metrics",
        signals_storage_url=redis_url,
        signal_failed_verifications=f"{THRESHOLD}/hour",
        signal_key_sharing="off",
    ) as cluster:
        seller = cluster.store.apps.create("Metrics " + secrets.token_hex(3), tier="pro")
        lic = cluster.store.licenses.create(seller.id)
        blocked = cluster.store.licenses.create(seller.id)
        cluster.store.licenses.set_status(blocked.id, "SUSPENDED")

        valid = cluster.many(VALID, lambda _: cluster.post("/licenses/verify", {"key": lic.key}))
        assert all(a.body["valid"] is True for a in valid)
        failed: list[Answer] = cluster.many(
            FAILED, lambda _: cluster.post("/licenses/verify", {"key": blocked.key})
        )
        assert all(a.body["reason"] == "license_suspended" for a in failed)
        pids = {a.pid for a in valid + failed}
        assert len(pids) >= 2, "the requests should have reached several workers"
        for _ in range(UNAUTHORIZED):
            assert httpx.get(cluster.api + "/apps", timeout=30).status_code == 401

        # The anomaly is recorded by the flushing thread of whichever worker saw the
        # batch that went over: wait for it (0.5 s batches), then check it stays alone.
        deadline = time.monotonic() + 20
        while True:
            events = [e for e in cluster.store.audit.list() if e.action == "security.anomaly"]
            if events or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # every worker's pending batch has been flushed by now
        events = [e for e in cluster.store.audit.list() if e.action == "security.anomaly"]
        assert [(e.target, e.data["signal"]) for e in events] == [
            (blocked.id, "failed_verifications")
        ]

        samples = _scrape(cluster.base_url, cluster.admin_key)
        verify = "/v1/licenses/verify"
        assert (
            samples[("licensechain_verifications_total", _labels(outcome="valid", reason="none"))]
            == VALID
        )
        assert (
            samples[
                (
                    "licensechain_verifications_total",
                    _labels(outcome="invalid", reason="license_suspended"),
                )
            ]
            == FAILED
        )
        assert samples[("licensechain_tokens_issued_total", frozenset())] == VALID
        assert (
            samples[
                (
                    "licensechain_http_requests_total",
                    _labels(endpoint=verify, method="POST", status="200"),
                )
            ]
            == VALID + FAILED
        )
        assert (
            samples[("licensechain_http_request_duration_seconds_count", _labels(endpoint=verify))]
            == VALID + FAILED
        )
        assert samples[("licensechain_auth_failures_total", _labels(status="401"))] == UNAUTHORIZED
        assert (
            samples[
                ("licensechain_security_anomalies_total", _labels(signal="failed_verifications"))
            ]
            == 1
        )
        # the files of more than one worker were read
        assert len(list(multiproc.glob("counter_*.db"))) >= 2
