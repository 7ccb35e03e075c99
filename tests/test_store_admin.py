"""The store under the admin API's app, key and statistics endpoints, on SQLite and PostgreSQL:
app update and delete, webhook URL and CORS origins, an app's own API key, license counts by
status, and verification outcomes per day."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from flask_licensechain.core.errors import Conflict, InvalidRequest, NotFound
from flask_licensechain.store import Store
from flask_licensechain.store.analytics import VerificationTally, day_of
from flask_licensechain.store.validation import origins, webhook_url

pytest_plugins = ["store_fixtures"]  # store (SQLite and PostgreSQL)
NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)


# -- apps: webhook URL, allowed origins, update, delete -------------------------------------


def test_app_keeps_webhook_url_and_normalized_origins(store: Store) -> None:
    app = store.apps.create(
        "Shop",
        webhook_url="https://hooks.example/lc",
        allowed_origins=["HTTPS://Shop.Example", "https://shop.example:443/", "http://x:3000"],
    )
    assert app.webhook_url == "https://hooks.example/lc"
    assert app.allowed_origins == ("https://shop.example", "http://x:3000")
    again = store.apps.get(app.id)
    assert again is not None
    assert again.webhook_url == app.webhook_url
    assert again.allowed_origins == app.allowed_origins
    assert store.apps.all_allowed_origins() == {"https://shop.example", "http://x:3000"}
    plain = store.apps.create("Plain")
    assert plain.webhook_url is None and plain.allowed_origins == ()


@pytest.mark.parametrize(
    "value",
    [
        "ftp://hooks.example/x",
        "hooks.example/x",
        "https://user:pw@hooks.example/x",
        "https:///nohost",
        "https://hooks.example:0/x",
        "https://hooks.example:99999/x",
        "https://hooks.example/a b",
        "https://hooks.example/\x00",
        "https://" + "a" * 2100 + ".example",
        42,
    ],
)
def test_bad_webhook_urls_are_refused(value: Any) -> None:
    with pytest.raises(InvalidRequest):
        webhook_url(value)


@pytest.mark.parametrize(
    "value",
    [
        ["*"],
        ["https://shop.example/path"],
        ["https://shop.example?q=1"],
        ["shop.example"],
        ["https://user@shop.example"],
        ["javascript:alert(1)"],
        ["https://shop.example:0"],
        ["https://shop.example:70000"],
        ["null"],
        [""],
        [7],
        "https://shop.example",
        ["https://a.example"] * 101,
    ],
)
def test_bad_origins_are_refused(value: Any) -> None:
    with pytest.raises(InvalidRequest):
        origins(value)


def test_app_update(store: Store) -> None:
    app = store.apps.create("Old name", "old", "free")
    updated = store.apps.update(
        app.id,
        name="New name",
        description=None,
        tier="business",
        webhook_url="https://hooks.example/new",
        allowed_origins=["https://a.example"],
    )
    assert updated is not None
    assert (updated.name, updated.description, updated.tier) == ("New name", None, "business")
    assert updated.slug == app.slug  # integrations may use it
    assert updated.webhook_url == "https://hooks.example/new"
    assert updated.allowed_origins == ("https://a.example",)
    assert updated.updated_at >= app.updated_at
    assert store.apps.get(app.id) == updated
    assert store.apps.update("app_missing", name="x") is None
    with pytest.raises(InvalidRequest):
        store.apps.update(app.id, tier="platinum")
    with pytest.raises(InvalidRequest):
        store.apps.update(app.id, name="  ")
    with pytest.raises(InvalidRequest):
        store.apps.update(app.id, slug="x")
    assert store.apps.get(app.id) == updated


def test_app_delete_refused_while_licenses_are_not_revoked(store: Store) -> None:
    app = store.apps.create("Doomed")
    active = store.licenses.create(app.id)
    suspended = store.licenses.create(app.id)
    store.licenses.set_status(suspended.id, "SUSPENDED")
    store.licenses.bind_device(active.id, "m1", NOW)
    key, _ = store.api_keys.create("app key", ["licenses:read"], app_id=app.id)
    with pytest.raises(Conflict):
        store.apps.delete(app.id)
    store.licenses.set_status(active.id, "REVOKED")
    with pytest.raises(Conflict):  # suspended is not revoked
        store.apps.delete(app.id)
    assert store.apps.get(app.id) is not None
    store.licenses.set_status(suspended.id, "REVOKED")
    deleted = store.apps.delete(app.id)
    assert deleted.id == app.id
    assert store.apps.get(app.id) is None
    assert store.licenses.get(active.id) is None
    revoked_key = store.api_keys.get(key.id)
    assert revoked_key is not None and revoked_key.revoked
    with pytest.raises(NotFound):
        store.apps.delete(app.id)


def test_app_list_pages_and_app_filter(store: Store) -> None:
    made = [store.apps.create(f"App {i}") for i in range(5)]
    assert [a.id for a in store.apps.list()] == [a.id for a in made]
    assert [a.id for a in store.apps.list(page=2, limit=2)] == [made[2].id, made[3].id]
    assert [a.id for a in store.apps.list(app_id=made[1].id)] == [made[1].id]
    assert store.apps.count() == 5
    assert store.apps.count(app_id=made[1].id) == 1
    assert store.apps.count(app_id="app_none") == 0


# -- an app's own API key ---------------------------------------------------------------------


def test_replace_app_key_revokes_only_that_apps_keys(store: Store) -> None:
    app = store.apps.create("Keyed")
    other = store.apps.create("Other")
    first, first_secret, revoked = store.api_keys.replace_app_key(
        app.id, "app key", ["licenses:read"]
    )
    assert revoked == []
    assert first.app_ids == {app.id}
    authenticated = store.api_keys.authenticate(first_secret)
    assert authenticated is not None and authenticated.app_ids == {app.id}
    other_key, other_secret, _ = store.api_keys.replace_app_key(other.id, "k", ["licenses:read"])
    _, global_secret = store.api_keys.create("global", ["*"])
    second, second_secret, revoked = store.api_keys.replace_app_key(
        app.id, "app key", ["licenses:read"]
    )
    assert revoked == [first.id]
    assert store.api_keys.authenticate(first_secret) is None
    assert store.api_keys.authenticate(second_secret) is not None
    assert store.api_keys.authenticate(other_secret) is not None
    global_key = store.api_keys.authenticate(global_secret)
    assert global_key is not None and global_key.app_ids is None
    assert second.id != other_key.id
    with pytest.raises(NotFound):
        store.api_keys.replace_app_key("app_missing", "k", ["licenses:read"])


def test_concurrent_key_replacements_leave_one_live_key(store: Store) -> None:
    app = store.apps.create("Raced")
    secrets_made: list[str] = []
    errors: list[BaseException] = []

    def replace() -> None:
        try:
            _, secret, _ = store.api_keys.replace_app_key(app.id, "k", ["licenses:read"])
            secrets_made.append(secret)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=replace) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    live = [s for s in secrets_made if store.api_keys.authenticate(s) is not None]
    assert len(live) == 1


# -- license counts ---------------------------------------------------------------------------


def test_license_stats_by_effective_status_and_app(store: Store) -> None:
    app = store.apps.create("Counted")
    other = store.apps.create("Other")
    store.licenses.create(app.id)
    store.licenses.create(app.id, expires_at=NOW + timedelta(days=1))
    store.licenses.create(app.id, expires_at=NOW - timedelta(days=1))  # expired
    store.licenses.set_status(store.licenses.create(app.id).id, "REVOKED")
    store.licenses.set_status(store.licenses.create(app.id).id, "SUSPENDED")
    # A suspended license past its expiry counts as suspended, as its status says.
    past = store.licenses.create(app.id, expires_at=NOW - timedelta(days=2))
    store.licenses.set_status(past.id, "SUSPENDED")
    store.licenses.create(other.id)
    assert store.licenses.stats(app_id=app.id, now=NOW) == {
        "total": 6,
        "active": 2,
        "expired": 1,
        "revoked": 1,
        "suspended": 2,
    }
    assert store.licenses.stats(now=NOW)["total"] == 7
    assert store.licenses.stats(now=NOW)["active"] == 3
    assert store.licenses.stats(app_id="app_none", now=NOW) == dict.fromkeys(
        ("total", "active", "expired", "revoked", "suspended"), 0
    )


# -- verification outcomes per day ------------------------------------------------------------


def test_outcomes_are_counted_per_day_app_and_license(store: Store) -> None:
    tally = VerificationTally(store.verification_counts, flush_seconds=3600)
    yesterday = NOW - timedelta(days=1)
    for moment, outcome, app, lic in [
        (NOW, "valid", "app_a", "lic_1"),
        (NOW, "valid", "app_a", "lic_1"),
        (NOW, "license_expired", "app_a", "lic_2"),
        (NOW, "license_not_found", None, None),
        (yesterday, "valid", "app_a", "lic_1"),
        (NOW, "valid", "app_b", "lic_3"),
    ]:
        tally.record(outcome=outcome, now=moment, app_id=app, license_id=lic)
    counts = store.verification_counts
    assert counts.per_day(NOW.date(), NOW.date()) == {}  # nothing written yet
    tally.flush()
    tally.record(outcome="valid", now=NOW, app_id="app_a", license_id="lic_1")
    tally.flush()  # adds to the stored counter
    today, before = day_of(NOW), day_of(yesterday)
    since = (NOW - timedelta(days=30)).date()
    assert counts.per_day(since, NOW.date()) == {
        today: {"valid": 4, "license_expired": 1, "license_not_found": 1},
        before: {"valid": 1},
    }
    assert counts.per_day(since, NOW.date(), app_id="app_a") == {
        today: {"valid": 3, "license_expired": 1},
        before: {"valid": 1},
    }
    assert counts.per_day(since, NOW.date(), license_id="lic_1") == {
        today: {"valid": 3},
        before: {"valid": 1},
    }
    assert counts.per_day(NOW.date(), NOW.date(), license_id="lic_1") == {today: {"valid": 3}}
    assert counts.per_day(date(2001, 1, 1), date(2001, 1, 2)) == {}
    tally.close()


def test_the_timer_writes_pending_counts(store: Store) -> None:
    tally = VerificationTally(store.verification_counts, flush_seconds=0.05)
    tally.record(outcome="valid", now=NOW, app_id="app_a", license_id="lic_1")
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while not store.verification_counts.per_day(NOW.date(), NOW.date()):
        assert datetime.now(UTC) < deadline, "the timer never wrote the counts"
        threading.Event().wait(0.02)
    tally.close()


def test_a_failed_flush_keeps_the_counts(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    tally = VerificationTally(store.verification_counts, flush_seconds=3600)
    tally.record(outcome="valid", now=NOW, app_id="app_a", license_id="lic_1")

    def down(_counts: Any) -> None:
        raise ConnectionError("store down")

    monkeypatch.setattr(store.verification_counts, "add", down)
    with pytest.raises(ConnectionError):
        tally.flush()
    tally.flush(quiet=True)  # logged, not raised
    monkeypatch.undo()
    tally.record(outcome="valid", now=NOW, app_id="app_a", license_id="lic_1")
    tally.flush()
    assert store.verification_counts.per_day(NOW.date(), NOW.date()) == {day_of(NOW): {"valid": 2}}
    tally.close()


def test_pending_counters_are_bounded(store: Store) -> None:
    tally = VerificationTally(store.verification_counts, flush_seconds=3600, max_pending=2)
    for lic in ("lic_1", "lic_2", "lic_3", "lic_1"):
        tally.record(outcome="valid", now=NOW, app_id="app_a", license_id=lic)
    tally.flush()
    assert store.verification_counts.per_day(NOW.date(), NOW.date(), license_id="lic_3") == {}
    assert store.verification_counts.per_day(NOW.date(), NOW.date(), app_id="app_a") == {
        day_of(NOW): {"valid": 3}
    }
    tally.close()
