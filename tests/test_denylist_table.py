"""The denylist's in-memory table and the ``memory://`` copy of the store, rule by rule.

``RevocationTable`` (``core/denylist/base.py``): a ``jti`` entry voids one token until its
``until``; a ``block`` voids every token of a license until ``until`` or until lifted; a
``before`` mark voids the license's tokens whose ``iat`` is earlier than ``not_before``.
``MemoryDenylist`` (``core/denylist/memory.py``): a copy refreshed at most once per
``poll_interval`` (one counter read; the changes only when it moved), failing closed when
it cannot be brought up to date within ``max_staleness`` seconds. Times are unix seconds.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flask_licensechain.core.denylist import base as base_module
from flask_licensechain.core.denylist import memory as memory_module
from flask_licensechain.core.denylist.base import (
    KIND_BEFORE,
    KIND_BLOCK,
    KIND_JTI,
    KINDS,
    LIFT_GRACE,
    REVOCATION_HORIZON,
    Revocation,
    RevocationTable,
    batches,
    lifted,
    ttl_entry,
)
from flask_licensechain.core.denylist.memory import DEFAULT_POLL_INTERVAL, MemoryDenylist
from flask_licensechain.core.errors import Unavailable

NOW = 1_000_000.0


def test_revocation_horizon_is_a_day_plus_the_largest_leeway_and_a_minute() -> None:
    assert REVOCATION_HORIZON == 86400 + 300 + 60
    assert LIFT_GRACE == 3600.0
    assert KINDS == ("jti", "block", "before")
    assert DEFAULT_POLL_INTERVAL == 0.25


def test_ttl_entry_lifted_and_batches() -> None:
    assert ttl_entry(KIND_BEFORE, "lic", 30, NOW, 7) == Revocation(KIND_BEFORE, "lic", NOW + 30, 7)
    assert ttl_entry(KIND_JTI, "j", 30, NOW) == Revocation(KIND_JTI, "j", NOW + 30, 0)
    assert lifted("lic") == Revocation(KIND_BLOCK, "lic", 0.0, 0)
    items = [Revocation(KIND_JTI, str(i), NOW) for i in range(5)]
    assert [list(b) for b in batches(items, 2)] == [items[0:2], items[2:4], items[4:5]]
    assert list(batches([], 2)) == []


# -- RevocationTable ---------------------------------------------------------------------


def clock_at(t: float) -> Any:
    return lambda: t


def test_jti_entry_voids_its_token_until_its_until_exclusive() -> None:
    table = RevocationTable()
    table.apply([Revocation(KIND_JTI, "j", NOW + 10)], NOW)
    assert table.is_revoked("j", "lic", 0, clock_at(NOW + 9.9))
    assert not table.is_revoked("j", "lic", 0, clock_at(NOW + 10))
    assert not table.is_revoked("other", "lic", 0, clock_at(NOW))


def test_jti_entry_keeps_its_latest_until_and_ignores_an_expired_one() -> None:
    table = RevocationTable()
    table.apply([Revocation(KIND_JTI, "j", NOW + 100)], NOW)
    table.apply([Revocation(KIND_JTI, "j", NOW + 50)], NOW)
    assert table.jti == {"j": NOW + 100}
    table.apply([Revocation(KIND_JTI, "old", NOW), Revocation(KIND_JTI, "", NOW + 9)], NOW)
    assert table.jti == {"j": NOW + 100}
    assert table.sub == {}


def test_block_voids_every_token_of_the_license_until_lifted() -> None:
    table = RevocationTable()
    table.apply([Revocation(KIND_BLOCK, "lic", NOW + 10)], NOW)
    assert table.sub == {"lic": (NOW + 10, 0, 0.0)}
    assert table.is_revoked("any", "lic", 10**9, clock_at(NOW + 9))
    assert not table.is_revoked("any", "lic", 10**9, clock_at(NOW + 10))
    assert not table.is_revoked("any", "other", 0, clock_at(NOW))
    table.apply([Revocation(KIND_BLOCK, "lic", NOW + 50)], NOW)
    table.apply([Revocation(KIND_BLOCK, "lic", NOW + 20)], NOW)  # as written, not the max
    assert table.sub["lic"][0] == NOW + 20
    table.apply([lifted("lic")], NOW)
    assert "lic" not in table.sub
    assert not table.is_revoked("any", "lic", 0, clock_at(NOW))


def test_a_lift_keeps_the_licenses_before_mark() -> None:
    table = RevocationTable()
    table.apply(
        [Revocation(KIND_BEFORE, "lic", NOW + 100, 500), Revocation(KIND_BLOCK, "lic", NOW + 9)],
        NOW,
    )
    assert table.sub["lic"] == (NOW + 9, 500, NOW + 100)
    table.apply([lifted("lic")], NOW)
    assert table.sub["lic"] == (0.0, 500, NOW + 100)
    assert table.is_revoked("t", "lic", 499, clock_at(NOW))
    assert not table.is_revoked("t", "lic", 500, clock_at(NOW))


def test_before_mark_voids_tokens_issued_earlier_and_keeps_the_latest_mark() -> None:
    table = RevocationTable()
    table.apply([Revocation(KIND_BEFORE, "lic", NOW + 100, 500)], NOW)
    table.apply([Revocation(KIND_BEFORE, "lic", NOW + 50, 400)], NOW)  # older mark: ignored
    assert table.sub["lic"] == (0.0, 500, NOW + 100)
    table.apply([Revocation(KIND_BEFORE, "lic", NOW + 80, 500)], NOW)  # same mark: until max
    assert table.sub["lic"] == (0.0, 500, NOW + 100)
    table.apply([Revocation(KIND_BEFORE, "lic", NOW + 150, 500)], NOW)
    assert table.sub["lic"] == (0.0, 500, NOW + 150)
    table.apply([Revocation(KIND_BEFORE, "lic", NOW + 200, 600)], NOW)
    assert table.sub["lic"] == (0.0, 600, NOW + 200)
    table.apply([Revocation(KIND_BEFORE, "lic", NOW, 900)], NOW)  # expired: ignored
    table.apply([Revocation("unknown", "lic", NOW + 900, 900)], NOW)
    assert table.sub["lic"] == (0.0, 600, NOW + 200)
    table.apply([Revocation(KIND_BEFORE, "new", NOW + 1, 5)], NOW)
    assert table.sub["new"] == (0.0, 5, NOW + 1)


def test_expired_block_on_a_license_without_mark_removes_it() -> None:
    table = RevocationTable()
    table.apply([Revocation(KIND_BLOCK, "lic", NOW + 10)], NOW)
    table.apply([Revocation(KIND_BLOCK, "lic", NOW)], NOW)
    assert table.sub == {}
    table.apply([Revocation(KIND_BEFORE, "x", NOW, 5)], NOW)
    assert table.sub == {}
    table.apply([lifted("never-blocked")], NOW)  # a lift of nothing is no error
    assert table.sub == {}


def test_jti_entry_near_the_epoch_keeps_its_own_until() -> None:
    table = RevocationTable()
    table.apply([Revocation(KIND_JTI, "j", 0.5)], 0.0)
    assert table.jti == {"j": 0.5}


def test_replace_drops_what_the_new_load_does_not_hold() -> None:
    table = RevocationTable()
    table.apply([Revocation(KIND_JTI, "old", NOW + 10), Revocation(KIND_BLOCK, "a", NOW + 9)], NOW)
    table.replace([Revocation(KIND_JTI, "new", NOW + 10), Revocation(KIND_JTI, "x", NOW)], NOW)
    assert table.jti == {"new": NOW + 10}
    assert table.sub == {}


def test_purge_drops_expired_entries_and_keeps_live_ones() -> None:
    table = RevocationTable()
    table.apply(
        [
            Revocation(KIND_JTI, "gone", NOW + 10),
            Revocation(KIND_JTI, "kept", NOW + 11),
            Revocation(KIND_BLOCK, "blocked", NOW + 10),
            Revocation(KIND_BLOCK, "both", NOW + 10),
            Revocation(KIND_BEFORE, "both", NOW + 20, 7),
            Revocation(KIND_BEFORE, "marked", NOW + 10, 8),
            Revocation(KIND_BLOCK, "live", NOW + 30),
            Revocation(KIND_BEFORE, "live", NOW + 30, 9),
            Revocation(KIND_BLOCK, "unmarked", NOW + 30),
            Revocation(KIND_BEFORE, "unmarked", NOW + 10, 6),
        ],
        NOW,
    )
    table.purge(NOW + 10)
    assert table.jti == {"kept": NOW + 11}
    assert table.sub == {
        "both": (0.0, 7, NOW + 20),
        "live": (NOW + 30, 9, NOW + 30),
        "unmarked": (NOW + 30, 0, 0.0),
    }
    assert len(table) == 4
    table.purge(NOW + 20)
    assert table.sub == {"live": (NOW + 30, 9, NOW + 30), "unmarked": (NOW + 30, 0, 0.0)}


def test_entries_lists_what_the_table_holds() -> None:
    table = RevocationTable()
    held = [
        Revocation(KIND_JTI, "j", NOW + 10),
        Revocation(KIND_BLOCK, "a", NOW + 9),
        Revocation(KIND_BEFORE, "a", NOW + 8, 3),
        Revocation(KIND_BEFORE, "b", NOW + 7, 4),
    ]
    table.apply(held, NOW)
    assert sorted(table.entries(), key=repr) == sorted(held, key=repr)
    assert len(table) == 3


# -- MemoryDenylist: the copy of the store -------------------------------------------------


class FakeTime:
    """``time.monotonic`` of the memory module, moved by hand."""

    def __init__(self) -> None:
        self.t = 5000.0

    def monotonic(self) -> float:
        return self.t

    def time(self) -> float:
        return NOW


class Source:
    """A store's revocation record that counts what it is asked."""

    store_id = "test"

    def __init__(self, entries: list[Revocation]) -> None:
        self.entries = list(entries)
        self.seq = 1
        self.calls: list[str] = []
        self.up = True
        self.changes: list[Revocation] = []
        self.snapshot_at: list[float] = []

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if not self.up:
            raise Unavailable(detail="store down")

    def counter(self) -> int:
        self._check("counter")
        return self.seq

    def changes_since(self, seq: int) -> tuple[int, list[Revocation]]:
        self._check(f"changes_since {seq}")
        return self.seq, list(self.changes)

    def snapshot(self, now: float) -> tuple[int, list[Revocation]]:
        self._check("snapshot")
        self.snapshot_at.append(now)
        return self.seq, list(self.entries)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(memory_module, "time", fake)
    return fake


def copy_of(source: Source, **kw: Any) -> MemoryDenylist:
    return MemoryDenylist(source, clock=lambda: NOW, **kw)


def test_memory_copy_settings() -> None:
    default = MemoryDenylist()
    assert (default.poll_interval, default.max_staleness, default.fail_open) == (0.25, 2.0, False)
    assert MemoryDenylist(poll_interval=-3).poll_interval == 0.0
    assert MemoryDenylist(poll_interval=1).max_staleness == 4.0
    assert MemoryDenylist(poll_interval=1, max_staleness=0.5).max_staleness == 0.5
    assert default.seen == -1
    default.ping()
    default.close()


def test_first_check_loads_the_whole_table(fake_time: FakeTime) -> None:
    source = Source([Revocation(KIND_JTI, "j", NOW + 60)])
    denylist = copy_of(source, poll_interval=1)
    assert denylist.is_revoked("j", "lic", 0) is True
    assert source.calls == ["snapshot"]
    assert denylist.seen == 1
    assert len(denylist) == 1


def test_copy_reads_the_counter_at_most_once_per_poll_interval(fake_time: FakeTime) -> None:
    source = Source([])
    denylist = copy_of(source, poll_interval=1)
    denylist.is_revoked("j", "lic", 0)
    fake_time.t += 0.99
    denylist.is_revoked("j", "lic", 0)
    assert source.calls == ["snapshot"]
    fake_time.t += 0.01
    assert denylist.is_revoked("j", "lic", 0) is False
    assert source.calls == ["snapshot", "counter"]  # the counter did not move


def test_a_moved_counter_brings_only_the_changes(fake_time: FakeTime) -> None:
    source = Source([])
    denylist = copy_of(source, poll_interval=1)
    denylist.is_revoked("j", "lic", 0)
    source.seq = 4
    source.changes = [Revocation(KIND_BLOCK, "lic", NOW + 60)]
    fake_time.t += 1
    assert denylist.is_revoked("j", "lic", 0) is True
    assert source.calls == ["snapshot", "counter", "changes_since 1"]
    assert denylist.seen == 4
    # A counter behind the copy's means a restored store reusing its numbers: the copy
    # reloads the whole record and follows the store's counter.
    source.seq = 2
    source.changes = []
    fake_time.t += 1
    assert denylist.is_revoked("j", "lic", 0) is False  # the restored store has no block
    assert source.calls[-2:] == ["counter", "snapshot"]
    assert denylist.seen == 2


def test_a_copy_unrefreshed_for_half_the_lift_grace_reloads(fake_time: FakeTime) -> None:
    source = Source([])
    denylist = copy_of(source, poll_interval=1)
    denylist.refresh()
    fake_time.t += LIFT_GRACE / 2
    denylist.refresh()
    assert source.calls == ["snapshot", "counter"]
    fake_time.t += LIFT_GRACE / 2 + 0.01
    source.entries = [Revocation(KIND_JTI, "j", NOW + 60)]
    denylist.refresh()
    assert source.calls == ["snapshot", "counter", "snapshot"]
    assert denylist.is_revoked("j", "x", 0)


def test_refresh_before_due_does_nothing_unless_forced(fake_time: FakeTime) -> None:
    source = Source([])
    denylist = copy_of(source, poll_interval=10)
    denylist.refresh()
    denylist.refresh()
    assert source.calls == ["snapshot"]
    denylist.refresh(force=True)
    assert source.calls == ["snapshot", "counter"]


def test_rebuild_reloads_the_table_and_sets_the_next_poll(fake_time: FakeTime) -> None:
    source = Source([Revocation(KIND_JTI, "a", NOW + 60)])
    denylist = copy_of(source, poll_interval=10)
    denylist.publish([Revocation(KIND_JTI, "local", NOW + 60)])
    source.seq = 9
    denylist.rebuild()
    assert denylist.seen == 9
    assert {e.ident for e in denylist.table.entries()} == {"a"}
    assert denylist.is_revoked("a", "x", 0)
    assert source.calls == ["snapshot"]  # rebuilt: not due again for poll_interval
    assert source.snapshot_at == [NOW]  # the live entries as of the clock's now
    fake_time.t += 10
    source.up = False  # a rebuilt copy is recent: a failed refresh keeps it
    assert denylist.is_revoked("a", "x", 0) is True
    MemoryDenylist().rebuild()  # without a store: nothing to do


def test_a_failed_refresh_keeps_a_recent_copy_and_retries_soon(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source([Revocation(KIND_JTI, "j", NOW + 60)])
    denylist = copy_of(source, poll_interval=1, max_staleness=3)
    denylist.is_revoked("j", "x", 0)
    source.up = False
    fake_time.t += 1
    with caplog.at_level(logging.WARNING, "licensechain.denylist"):
        assert denylist.is_revoked("j", "x", 0) is True
    assert "keeping the copy" in caplog.text
    calls = len(source.calls)
    fake_time.t += 0.05
    denylist.is_revoked("j", "x", 0)
    assert len(source.calls) == calls  # no retry on every check
    fake_time.t += 0.05  # a retry after at most 0.1 s, not a whole poll interval
    denylist.is_revoked("j", "x", 0)
    assert len(source.calls) == calls + 1
    fake_time.t += 1.9  # 3.0 s since the last good refresh: still within max_staleness
    assert denylist.is_revoked("j", "x", 0) is True
    fake_time.t += 0.1
    with pytest.raises(Unavailable):
        denylist.is_revoked("j", "x", 0)


def test_a_stale_copy_fails_open_only_when_built_to(
    fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source([])
    source.up = False
    with pytest.raises(Unavailable):
        copy_of(source).is_revoked("j", "x", 0)
    opened = copy_of(source, fail_open=True)
    with caplog.at_level(logging.WARNING, "licensechain.denylist"):
        assert opened.is_revoked("j", "x", 0) is False
    assert "failing open" in caplog.text


def test_a_stuck_refresh_fails_closed(fake_time: FakeTime) -> None:
    denylist = copy_of(Source([]), max_staleness=0.05)
    denylist._poll_lock.acquire()
    try:
        with pytest.raises(Unavailable):
            denylist.refresh(force=True)
    finally:
        denylist._poll_lock.release()


def test_the_copy_purges_expired_entries_once_a_minute(fake_time: FakeTime) -> None:
    wall = [NOW]
    source = Source([])
    denylist = MemoryDenylist(source, poll_interval=1, clock=lambda: wall[0])
    denylist.refresh()
    denylist.publish([Revocation(KIND_JTI, "j", NOW + 50)])
    wall[0] = NOW + 100
    fake_time.t += 59
    denylist.refresh()
    assert len(denylist.table) == 1  # expired, kept until the purge
    fake_time.t += 1
    denylist.refresh()
    assert len(denylist.table) == 0
    denylist.publish([Revocation(KIND_JTI, "k", NOW + 150)])
    wall[0] = NOW + 200
    fake_time.t += 1  # the next purge is a minute after the last one, not before
    denylist.refresh()
    assert len(denylist.table) == 1
    fake_time.t += 59
    denylist.refresh()
    assert len(denylist.table) == 0


def test_an_empty_store_at_counter_zero_is_loaded_once(fake_time: FakeTime) -> None:
    source = Source([])
    source.seq = 0
    denylist = copy_of(source, poll_interval=1, max_staleness=5)
    denylist.is_revoked("j", "x", 0)
    fake_time.t += 1
    denylist.is_revoked("j", "x", 0)
    assert source.calls == ["snapshot", "counter"]
    source.up = False  # loaded at counter 0: a recent copy, kept
    fake_time.t += 1
    assert denylist.is_revoked("j", "x", 0) is False


def test_a_forked_child_gets_free_locks() -> None:
    denylist = MemoryDenylist()
    denylist._poll_lock.acquire()
    denylist.table.lock.acquire()
    memory_module._reset_locks_after_fork()
    assert denylist._poll_lock.acquire(blocking=False)
    assert denylist.table.lock.acquire(blocking=False)


def test_without_a_store_the_copy_is_its_own_list(fake_time: FakeTime) -> None:
    denylist = MemoryDenylist(clock=lambda: NOW)
    denylist.refresh()
    denylist.revoke_jti("j", 5)
    denylist.revoke_sub("s", 5)
    assert base_module.Revocation(KIND_BLOCK, "s", NOW + 5) in denylist.table.entries()
    assert denylist.is_revoked("j", "x", 0) and denylist.is_revoked("y", "s", 0)
    denylist.unrevoke_sub("s")
    assert not denylist.is_revoked("y", "s", 0)
