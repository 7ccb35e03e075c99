"""Deciding a verification: outcome order, hardware binding (``hwBound``), a license gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, decode_unverified

from flask_licensechain.api.verification import NOT_FOUND, decide
from flask_licensechain.store import Store, open_store
from flask_licensechain.store.licenses import LAST_SEEN_RESOLUTION
from flask_licensechain.store.schema import devices, licenses

pytest_plugins = ["issuer_fixtures"]

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    opened.upgrade_schema()
    try:
        yield opened
    finally:
        opened.dispose()


def new_license(store: Store, **fields: Any) -> Any:
    app = store.apps.create("Demo", tier="pro")
    return store.licenses.create(app.id, **fields)


# -- the HTTP answer ------------------------------------------------------------------------------


def test_verifying_a_bound_hwuid_again_answers_hw_bound_both_times(
    sqlite_issuer: Issuer,
) -> None:
    lic = sqlite_issuer.new_license()
    answers = [sqlite_issuer.verify(key=lic.key, hwuid="m1").get_json() for _ in range(2)]
    for answer in answers:  # the second is within the 60 s last-seen resolution: a pure read
        assert answer["valid"] is True and answer["hwBound"] is True
        assert decode_unverified(answer["license_token"])[1]["hw_bound"] is True


def test_verify_without_hwuid_is_not_hw_bound(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    sqlite_issuer.verify(key=lic.key, hwuid="m1")
    answer = sqlite_issuer.verify(key=lic.key).get_json()
    assert answer["valid"] is True and answer["hwBound"] is False
    assert decode_unverified(answer["license_token"])[1]["hw_bound"] is False


def test_license_deleted_between_read_and_device_bind_is_license_not_found(
    sqlite_issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lic = sqlite_issuer.new_license()
    repository = sqlite_issuer.store.licenses
    read = repository.find_for_verification

    def read_then_delete(key: str) -> Any:
        found = read(key)
        with sqlite_issuer.store.engine.begin() as conn:
            conn.execute(sa.delete(devices).where(devices.c.license_id == lic.id))
            conn.execute(sa.delete(licenses).where(licenses.c.id == lic.id))
        return found

    monkeypatch.setattr(repository, "find_for_verification", read_then_delete)
    response = sqlite_issuer.verify(key=lic.key, hwuid="m1")
    assert response.status_code == 200
    assert response.get_json() == {"valid": False, "reason": "license_not_found"}


# -- decide(), on a real store ---------------------------------------------------------------------


def test_unknown_key_is_not_found(store: Store) -> None:
    assert decide(store.licenses, "LC-AAAAAA-BBBBBB-CCCCCC", app_id=None, hwuid=None, now=NOW) == (
        NOT_FOUND
    )


def test_outcome_order_app_then_status_then_hardware(store: Store) -> None:
    lic = new_license(store, require_hwuid=True)
    store.licenses.set_status(lic.id, "SUSPENDED")
    other = decide(store.licenses, lic.key, app_id="app_other", hwuid=None, now=NOW)
    assert (other.reason, other.status, other.license) == ("app_mismatch", None, None)
    suspended = decide(store.licenses, lic.key, app_id=lic.app_id, hwuid=None, now=NOW)
    assert (suspended.reason, suspended.status) == ("license_suspended", "SUSPENDED")
    store.licenses.set_status(lic.id, "ACTIVE")
    required = decide(store.licenses, lic.key, app_id=lic.app_id, hwuid=None, now=NOW)
    assert (required.reason, required.status, required.license) == (
        "hardware_id_required",
        "ACTIVE",
        None,
    )


def test_expired_license_reason_and_status(store: Store) -> None:
    lic = new_license(store, expires_at=NOW - timedelta(seconds=1))
    decision = decide(store.licenses, lic.key, app_id=None, hwuid="m1", now=NOW)
    assert (decision.reason, decision.status) == ("license_expired", "EXPIRED")
    assert store.licenses.get(lic.id).devices == ()  # a refused request never binds


def test_valid_without_hwuid_carries_license_and_app(store: Store) -> None:
    lic = new_license(store)
    decision = decide(store.licenses, lic.key, app_id=lic.app_id, hwuid=None, now=NOW)
    assert decision.reason is None and decision.status == "ACTIVE"
    assert decision.license is not None and decision.license.id == lic.id
    assert decision.app is not None and decision.app.id == lic.app_id
    assert decision.hw_bound is False


def test_new_device_is_bound_and_the_decision_shows_it(store: Store) -> None:
    lic = new_license(store, max_devices=2)
    decision = decide(store.licenses, lic.key, app_id=None, hwuid="m1", now=NOW)
    assert (decision.reason, decision.status, decision.hw_bound) == (None, "ACTIVE", True)
    assert decision.license is not None and decision.app is not None
    assert [d.hwuid for d in decision.license.devices] == ["m1"]
    assert [d.hwuid for d in store.licenses.get(lic.id).devices] == ["m1"]


def test_known_device_within_the_resolution_is_bound_without_a_write(store: Store) -> None:
    lic = new_license(store)
    decide(store.licenses, lic.key, app_id=None, hwuid="m1", now=NOW)
    later = NOW + LAST_SEEN_RESOLUTION - timedelta(seconds=1)
    decision = decide(store.licenses, lic.key, app_id=None, hwuid="m1", now=later)
    assert (decision.reason, decision.status, decision.hw_bound) == (None, "ACTIVE", True)
    assert decision.license is not None and decision.app is not None
    assert store.licenses.get(lic.id).devices[0].last_seen_at == NOW


def test_known_device_after_the_resolution_refreshes_last_seen(store: Store) -> None:
    lic = new_license(store)
    decide(store.licenses, lic.key, app_id=None, hwuid="m1", now=NOW)
    later = NOW + LAST_SEEN_RESOLUTION
    decision = decide(store.licenses, lic.key, app_id=None, hwuid="m1", now=later)
    assert decision.hw_bound is True and decision.license is not None
    assert decision.license.devices[0].last_seen_at == later
    assert store.licenses.get(lic.id).devices[0].last_seen_at == later


def test_full_license_refuses_a_new_device(store: Store) -> None:
    lic = new_license(store, max_devices=1)
    decide(store.licenses, lic.key, app_id=None, hwuid="m1", now=NOW)
    decision = decide(store.licenses, lic.key, app_id=None, hwuid="m2", now=NOW)
    assert (decision.reason, decision.status, decision.license, decision.hw_bound) == (
        "hardware_id_mismatch",
        "ACTIVE",
        None,
        False,
    )
