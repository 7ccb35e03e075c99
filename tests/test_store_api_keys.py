"""Admin API keys in the store: scopes must be a list of contract scopes, never a bare string."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_licensechain.core.errors import InvalidRequest, Unavailable
from flask_licensechain.store import API_KEY_SCOPES, Store, open_store
from flask_licensechain.store import api_keys as api_keys_module
from flask_licensechain.store.schema import api_keys

#: CONTRACT section 2's scopes, written out (not read back from the code under test).
CONTRACT_SCOPES = (
    "apps:read",
    "apps:write",
    "licenses:read",
    "licenses:write",
    "tokens:revoke",
    "keys:rotate",
    "api-keys:write",
    "audit:read",
    "webhooks:write",
    "metrics:read",  # issue 11's monitoring (VOCABULARY's new scopes): GET <metrics path>
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


def test_last_used_is_recorded_at_most_once_a_minute(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plaintext = store.api_keys.create("k", ["apps:read"])
    first = store.api_keys.authenticate(plaintext)
    assert first is not None and first.last_used_at is not None
    again = store.api_keys.authenticate(plaintext)
    assert again is not None and again.last_used_at == first.last_used_at
    # a minute later the use is recorded again
    earlier = first.last_used_at - timedelta(minutes=1)
    with store.engine.begin() as conn:
        conn.execute(sa.update(api_keys).values(last_used_at=earlier))
    later = store.api_keys.authenticate(plaintext)
    assert later is not None and later.last_used_at is not None
    assert later.last_used_at > first.last_used_at
    assert store.api_keys.list()[0].last_used_at == later.last_used_at
    assert api_keys_module.LAST_USED_RESOLUTION == timedelta(minutes=1)


def test_just_under_a_minute_is_not_recorded_again(store: Store) -> None:
    _, plaintext = store.api_keys.create("k", ["apps:read"])
    recent = datetime.now(UTC) - timedelta(seconds=50)
    with store.engine.begin() as conn:
        conn.execute(sa.update(api_keys).values(last_used_at=recent))
    authed = store.api_keys.authenticate(plaintext)
    assert authed is not None and authed.last_used_at == recent


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


def test_a_failed_last_used_write_does_not_fail_authentication(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    record, plaintext = store.api_keys.create("k", ["apps:read"])
    database = store.api_keys._db

    def busy() -> Any:
        raise Unavailable(detail="database is locked")

    monkeypatch.setattr(database, "write", busy)
    authed = store.api_keys.authenticate(plaintext)
    assert authed is not None and authed.id == record.id
    assert "could not record API key use" in caplog.text and "database is locked" in caplog.text


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
