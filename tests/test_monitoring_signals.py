"""Security signals per license (monitoring/signals.py, monitoring/windows.py).

- Each signal (hardware-id churn, key sharing, failed verifications) fires once its
  threshold is exceeded within the window, and not before; it records one
  ``security.anomaly`` audit event by the system actor, with no personal data (no address,
  key, hardware id or e-mail), and increments ``licensechain_security_anomalies_total``.
- Firing is deduplicated per window and license; it never changes an answer.
- Releases through the admin API count as churn; a repeated address counts once.
- Windows: old members leave the window, the count is capped (bounded memory), a claim is
  won once per window. In Redis the counts and claims are shared: two monitors (two
  workers) that each stay under the threshold fire once together.
- A window store that fails never reaches the customer.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from gate_support import admin_headers, issuer_app_with
from prometheus_client import REGISTRY

from flask_licensechain import get_state
from flask_licensechain.monitoring.signals import (
    FAILED_VERIFICATIONS,
    HARDWARE_CHURN,
    KEY_SHARING,
    Anomaly,
    SignalMonitor,
    Threshold,
)
from flask_licensechain.monitoring.windows import MemoryWindows, RedisWindows, WindowAdd
from flask_licensechain.state import IssuerState

EMAIL = "buyer@example.com"


def _app(tmp_path: Path, **config: Any) -> Flask:
    """An issuer app whose signal batches wait for the test's own ``_flush``."""
    app = issuer_app_with(tmp_path, gated=False, **config)
    monitoring = _state(app).monitoring
    if monitoring is not None and monitoring.signals is not None:
        monitoring.signals.flush_seconds = 3600
    return app


def _state(app: Flask) -> IssuerState:
    state = get_state(app)
    assert isinstance(state, IssuerState)
    return state


def _flush(app: Flask) -> list[Anomaly]:
    monitoring = _state(app).monitoring
    assert monitoring is not None and monitoring.signals is not None
    return monitoring.signals.flush()


def _anomalies(app: Flask) -> list[Any]:
    return [e for e in _state(app).store.audit.list() if e.action == "security.anomaly"]


def _fired(signal: str) -> float:
    return (
        REGISTRY.get_sample_value("licensechain_security_anomalies_total", {"signal": signal})
        or 0.0
    )


def _license(app: Flask, **fields: Any) -> Any:
    store = _state(app).store
    seller = store.apps.create("Signals " + secrets.token_hex(3), tier="pro")
    return store.licenses.create(seller.id, issued_email=EMAIL, **fields)


def _verify(app: Flask, key: str, hwuid: str | None = None, ip: str = "192.0.2.1") -> Any:
    body = {"key": key} if hwuid is None else {"key": key, "hwuid": hwuid}
    response = app.test_client().post(
        "/v1/licenses/verify", json=body, environ_base={"REMOTE_ADDR": ip}
    )
    assert response.status_code == 200
    return response.get_json()


def _assert_no_personal_data(event: Any, *secrets_: str) -> None:
    assert event.actor == "system"
    assert set(event.data) == {"signal", "threshold", "window_seconds"}
    text = repr(event)
    for value in secrets_:
        assert value not in text


# -- the three signals, end to end ---------------------------------------------------------


def test_hardware_churn_fires_once_and_blocks_nobody(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_SIGNAL_HARDWARE_CHURN="3/hour")
    lic = _license(app, max_devices=1)
    before = _fired(HARDWARE_CHURN)
    assert _verify(app, lic.key, "hw-home")["valid"] is True  # bound: 1
    assert _verify(app, lic.key, "hw-2")["reason"] == "hardware_id_mismatch"  # 2
    assert _verify(app, lic.key, "hw-3")["reason"] == "hardware_id_mismatch"  # 3
    assert _flush(app) == [] and _anomalies(app) == []  # at the threshold: not over it
    assert _verify(app, lic.key, "hw-4")["reason"] == "hardware_id_mismatch"  # 4 > 3
    fired = _flush(app)
    assert [(a.signal, a.license_id) for a in fired] == [(HARDWARE_CHURN, lic.id)]
    [event] = _anomalies(app)
    assert event.target == lic.id
    assert event.data == {"signal": HARDWARE_CHURN, "threshold": 3, "window_seconds": 3600.0}
    _assert_no_personal_data(event, "hw-4", "hw-home", lic.key, EMAIL, "192.0.2.1")
    assert _fired(HARDWARE_CHURN) == before + 1
    # Once per window: more churn records nothing more; the bound device still verifies.
    for n in range(5):
        _verify(app, lic.key, f"hw-more-{n}")
    assert _verify(app, lic.key, "hw-home")["valid"] is True
    assert _flush(app) == [] and len(_anomalies(app)) == 1


def test_device_releases_count_as_churn(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_SIGNAL_HARDWARE_CHURN="3/hour")
    lic = _license(app, max_devices=5)
    headers = admin_headers(app, "licenses:write")
    client = app.test_client()
    for hwuid in ("a", "b"):
        assert _verify(app, lic.key, hwuid)["valid"] is True  # 2 binds
        response = client.delete(f"/v1/licenses/{lic.id}/devices/{hwuid}", headers=headers)
        assert response.status_code == 200  # 2 releases: 4 > 3
    assert [a.signal for a in _flush(app)] == [HARDWARE_CHURN]


def test_key_sharing_counts_distinct_addresses(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_SIGNAL_KEY_SHARING="3/hour")
    lic = _license(app)
    for _ in range(10):  # one address, many times: one member
        _verify(app, lic.key, ip="198.51.100.7")
    for ip in ("198.51.100.8", "198.51.100.9"):
        _verify(app, lic.key, ip=ip)
    assert _flush(app) == []
    assert _verify(app, lic.key, ip="198.51.100.10")["valid"] is True  # the 4th address
    [anomaly] = _flush(app)
    assert (anomaly.signal, anomaly.license_id) == (KEY_SHARING, lic.id)
    [event] = _anomalies(app)
    _assert_no_personal_data(event, "198.51.100", lic.key, EMAIL)


def test_failed_verifications_spike(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_SIGNAL_FAILED_VERIFICATIONS="5/minute")
    lic = _license(app)
    _state(app).store.licenses.set_status(lic.id, "SUSPENDED")
    for _ in range(5):
        assert _verify(app, lic.key)["reason"] == "license_suspended"
    assert _flush(app) == []
    _verify(app, lic.key)
    assert [a.signal for a in _flush(app)] == [FAILED_VERIFICATIONS]
    [event] = _anomalies(app)
    assert event.data["window_seconds"] == 60.0
    _assert_no_personal_data(event, lic.key, EMAIL)


def test_unknown_keys_and_passing_verifications_fire_nothing(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        LICENSECHAIN_SIGNAL_FAILED_VERIFICATIONS="2/hour",
        LICENSECHAIN_SIGNAL_HARDWARE_CHURN="2/hour",
    )
    lic = _license(app, max_devices=1)
    for _ in range(10):
        assert _verify(app, lic.key, "same-device")["valid"] is True
        assert _verify(app, "LC-AAAAAA-BBBBBB-CCCCCC")["valid"] is False
    assert _flush(app) == [] and _anomalies(app) == []


def test_signals_off(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_SIGNALS_ENABLED=False)
    monitoring = _state(app).monitoring
    assert monitoring is not None and monitoring.signals is None
    app2 = _app(tmp_path / "two", LICENSECHAIN_SIGNAL_KEY_SHARING="off")
    monitoring2 = _state(app2).monitoring
    assert monitoring2 is not None and monitoring2.signals is not None
    assert KEY_SHARING not in monitoring2.signals.thresholds


@pytest.mark.parametrize("value", ["often", "10/hour;20/day", "0/hour", ""])
def test_bad_threshold_is_a_config_error(tmp_path: Path, value: str) -> None:
    from flask_licensechain.core.errors import ConfigError

    with pytest.raises(ConfigError, match="LICENSECHAIN_SIGNAL_KEY_SHARING"):
        _app(tmp_path, LICENSECHAIN_SIGNAL_KEY_SHARING=value)


def test_a_failing_window_store_never_reaches_the_customer(tmp_path: Path) -> None:
    app = _app(tmp_path, LICENSECHAIN_SIGNAL_KEY_SHARING="1/hour")
    monitoring = _state(app).monitoring
    assert monitoring is not None and monitoring.signals is not None

    class Broken(MemoryWindows):
        def add_many(self, adds: Any, now: float) -> list[int]:
            raise ConnectionError("windows are down")

    monitoring.signals.windows = Broken()
    lic = _license(app)
    assert _verify(app, lic.key, ip="192.0.2.50")["valid"] is True
    monitoring.signals._on_timer()  # the timer thread's path: logged, not raised


# -- windows -------------------------------------------------------------------------------


def test_memory_window_slides_and_caps() -> None:
    windows = MemoryWindows()
    add = lambda members, now: windows.add_many(  # noqa: E731
        [WindowAdd("k", members, window=10.0, cap=3)], now
    )[0]
    assert add({"a": 100.0, "b": 101.0}, 101.0) == 2
    assert add({"a": 105.0}, 105.0) == 2  # seen again: still one member
    assert add({"c": 112.0}, 112.0) == 2  # b (101) left the window; a (105) stays
    assert add({"d": 113.0, "e": 113.5, "f": 114.0}, 114.0) == 3  # capped at 3


def test_memory_window_keeps_at_most_max_keys() -> None:
    windows = MemoryWindows(max_keys=2)
    for key in ("one", "two", "three"):
        windows.add_many([WindowAdd(key, {"m": 1.0}, 10.0, 5)], 1.0)
    assert list(windows._windows) == ["two", "three"]


def test_claim_once_per_window() -> None:
    windows = MemoryWindows()
    assert windows.claim_many([("k", 10.0), ("j", 10.0)], 100.0) == [True, True]
    assert windows.claim_many([("k", 10.0)], 105.0) == [False]
    assert windows.claim_many([("k", 10.0)], 110.5) == [True]
    windows.release("j")
    assert windows.claim_many([("j", 10.0)], 101.0) == [True]


@pytest.mark.redis
def test_redis_windows_are_shared_by_workers(redis_url: str) -> None:
    """Two monitors (as two workers) on one Redis: 2 + 2 addresses > 3 fires once."""
    import redis

    prefix = f"lc-test-signals:{secrets.token_hex(6)}:"
    client = redis.Redis.from_url(redis_url)
    fired: list[Anomaly] = []
    threshold = {KEY_SHARING: Threshold(3, 3600.0)}
    workers = [
        SignalMonitor(threshold, RedisWindows(client, prefix), fired.append) for _ in range(2)
    ]
    try:
        for index, worker in enumerate(workers):
            for n in range(2):
                worker.observe_verification("lic_1", "app_1", None, f"203.0.113.{index * 2 + n}")
        assert workers[0].flush() == []  # 2 addresses so far
        assert [a.signal for a in workers[1].flush()] == [KEY_SHARING]  # 4 together
        for worker in workers:  # more addresses in the same window: claimed already
            worker.observe_verification("lic_1", "app_1", None, "203.0.113.99")
            assert worker.flush() == []
        assert len(fired) == 1
        members = client.zrange(prefix + "w:key_sharing:lic_1", 0, -1)
        assert len(members) == 4 and not any(b"203.0.113" in m for m in members)
        assert 0 < client.pttl(prefix + "w:key_sharing:lic_1") <= 3_601_000
    finally:
        for worker in workers:
            worker.close()
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_the_timer_flushes_by_itself() -> None:
    import time

    fired: list[Anomaly] = []
    monitor = SignalMonitor(
        {FAILED_VERIFICATIONS: Threshold(1, 60.0)},
        MemoryWindows(),
        fired.append,
        flush_seconds=0.05,
    )
    monitor.observe_verification("lic", "app", "license_expired", "192.0.2.1")
    monitor.observe_verification("lic", "app", "license_expired", "192.0.2.1")
    deadline = time.monotonic() + 10
    while not fired and time.monotonic() < deadline:
        time.sleep(0.02)
    monitor.close()
    assert [a.signal for a in fired] == [FAILED_VERIFICATIONS]
