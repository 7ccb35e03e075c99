"""Admin API keys in the store: scopes must be a list of contract scopes, never a bare string."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flask_licensechain.core.errors import InvalidRequest, Unavailable
from flask_licensechain.store import API_KEY_SCOPES, Store, open_store
from flask_licensechain.store import api_keys as api_keys_module

#: CONTRACT section 2's scopes, the vocabulary's new ones, and issue 11's finer license
#: scopes, written out (not read back from the code under test).
CONTRACT_SCOPES = (
    "apps:read",
    "apps:write",
    "licenses:read",
    "licenses:write",
    "licenses:suspend",
    "devices:write",
    "tokens:revoke",
    "keys:rotate",
    "api-keys:read",
    "api-keys:write",
    "audit:read",
    "webhooks:read",
    "webhooks:write",
    "customers:read",
    "customers:erase",
    "metrics:read",
    "users:admin",
    "*",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    opened.upgrade_schema()
    try:
        yield opened
    finally:
        opened.dispose()


def test_scopes_are_the_contract_scopes() -> None:
    assert API_KEY_SCOPES == CONTRACT_SCOPES


@pytest.mark.parametrize(
    "scopes",
    ["*", "apps:read", b"*", None, 7, {"*": True}],
    ids=["star_string", "scope_string", "bytes", "none", "int", "mapping"],
)
def test_scopes_that_are_not_a_list_are_invalid_request(store: Store, scopes: Any) -> None:
    # A bare "*" iterates as one "*", a mapping as its keys: neither may create a key.
    with pytest.raises(InvalidRequest):
        store.api_keys.create("k", scopes)
    assert store.api_keys.list() == []


def test_duplicate_scopes_are_kept_once_in_order(store: Store) -> None:
    record, _ = store.api_keys.create("k", ("audit:read", "apps:read", "audit:read"))
    assert record.scopes == ("audit:read", "apps:read")
    assert store.api_keys.list()[0].scopes == ("audit:read", "apps:read")


def test_name_is_trimmed(store: Store) -> None:
    record, _ = store.api_keys.create("  ci key  ", ["apps:read"])
    assert record.name == "ci key" == store.api_keys.list()[0].name


def test_listed_key_carries_every_stored_field(store: Store) -> None:
    record, plaintext = store.api_keys.create("k", ["apps:read"], environment="test")
    listed = store.api_keys.list()[0]
    assert listed == record
    assert listed.prefix == plaintext[:12] and plaintext.startswith("lc_test_")


def test_list_is_ordered_by_creation(store: Store) -> None:
    created = [store.api_keys.create(name, ["apps:read"])[0].id for name in "abcdef"]
    assert [k.id for k in store.api_keys.list()] == created  # not by the random ids


def test_usage_is_counted_in_memory_and_written_in_one_batch(store: Store) -> None:
    _, plaintext = store.api_keys.create("k", ["apps:read"])
    for _ in range(5):
        assert store.api_keys.authenticate(plaintext) is not None
    # Nothing written on the request path...
    assert store.api_keys.list()[0].usage_count == 0
    store.api_keys.usage.flush()
    # ...then one batch: the count and the last time.
    written = store.api_keys.list()[0]
    assert written.usage_count == 5 and written.last_used_at is not None
    store.api_keys.usage.flush()  # nothing pending: no change
    assert store.api_keys.list()[0].usage_count == 5


def test_usage_timer_writes_within_about_a_second(store: Store) -> None:
    _, plaintext = store.api_keys.create("k", ["apps:read"])
    assert store.api_keys.authenticate(plaintext) is not None
    deadline = time.monotonic() + 10
    while store.api_keys.list()[0].usage_count == 0:
        assert time.monotonic() < deadline, "the usage timer never wrote"
        time.sleep(0.05)
    assert api_keys_module.USAGE_FLUSH_SECONDS == 1.0


def test_an_older_batch_never_moves_last_used_back(store: Store) -> None:
    record, _ = store.api_keys.create("k", ["apps:read"])
    now = datetime.now(UTC)
    store.api_keys.usage.record(record.id, now, "192.0.2.1")
    store.api_keys.usage.flush()
    store.api_keys.usage.record(record.id, now - timedelta(minutes=5), "192.0.2.9")
    store.api_keys.usage.flush()
    written = store.api_keys.list()[0]
    assert written.usage_count == 2
    assert (written.last_used_at, written.last_used_ip) == (now, "192.0.2.1")


def test_revoked_key_never_authenticates(store: Store) -> None:
    record, plaintext = store.api_keys.create("k", ["*"])
    assert store.api_keys.revoke(record.id) is True
    assert store.api_keys.authenticate(plaintext) is None
    assert store.api_keys.list()[0].revoked_at is not None


@pytest.mark.parametrize("key_id", [None, 7, "", "x" * 10_000])
def test_revoking_an_unusable_id_is_false(store: Store, key_id: Any) -> None:
    store.api_keys.create("k", ["*"])
    assert store.api_keys.revoke(key_id) is False
    assert store.api_keys.list()[0].revoked_at is None


def test_a_failed_usage_write_does_not_fail_authentication_and_is_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    record, plaintext = store.api_keys.create("k", ["apps:read"])
    database = store.api_keys._db
    real_write = database.write

    def busy() -> Any:
        raise Unavailable(detail="database is locked")

    monkeypatch.setattr(database, "write", busy)
    authed = store.api_keys.authenticate(plaintext)
    assert authed is not None and authed.id == record.id
    store.api_keys.usage.flush(quiet=True)
    assert "could not store API key usage" in caplog.text and "database is locked" in caplog.text
    monkeypatch.setattr(database, "write", real_write)
    store.api_keys.usage.flush()
    assert store.api_keys.list()[0].usage_count == 1


def test_environment_must_be_live_or_test(store: Store) -> None:
    with pytest.raises(InvalidRequest):
        store.api_keys.create("k", ["*"], environment="LIVE")
    _, live = store.api_keys.create("k", ["*"])
    assert live.startswith("lc_live_") and len(live) == len("lc_live_") + 43


def test_revoking_one_key_leaves_the_others_live(store: Store) -> None:
    first, first_plain = store.api_keys.create("a", ["*"])
    _, second_plain = store.api_keys.create("b", ["*"])
    assert store.api_keys.revoke(first.id) is True
    assert store.api_keys.authenticate(first_plain) is None
    assert store.api_keys.authenticate(second_plain) is not None
    revoked = {k.id: k.revoked_at for k in store.api_keys.list()}
    assert revoked[first.id] is not None and revoked[first.id].tzinfo is not None
    assert [v for k, v in revoked.items() if k != first.id] == [None]


def test_revoked_at_is_utc_whatever_the_hosts_zone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, _ = store.api_keys.create("k", ["*"])
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    time.tzset()
    try:
        store.api_keys.revoke(record.id)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    revoked_at = store.api_keys.list()[0].revoked_at
    assert revoked_at is not None
    assert abs((revoked_at - datetime.now(UTC)).total_seconds()) < 3600


def test_get_by_id(store: Store) -> None:
    record, _ = store.api_keys.create("k", ["apps:read"])
    other, _ = store.api_keys.create("other", ["*"])
    assert store.api_keys.get(record.id) == record
    assert store.api_keys.get(other.id) == other
    assert store.api_keys.get("key_" + "0" * 24) is None
    for unusable in (None, 7, "", "x" * 10_000):
        assert store.api_keys.get(unusable) is None  # type: ignore[arg-type]
