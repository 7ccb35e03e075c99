"""The audit log's hash chain (``store/audit.py``): ``verify`` proves an intact chain and
names the first event that was edited, deleted or reordered directly in the database; an
erasure of personal data keeps it valid; ``prune`` leaves a checkpoint that still proves the
rest; appends stay one line under concurrent writer processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_licensechain.core.errors import InvalidRequest
from flask_licensechain.store import Actor, AuditKeys, Change, Store, open_store
from flask_licensechain.store.schema import audit_checkpoints, audit_events, audit_head

pytest_plugins = ["store_fixtures"]

KEY = Actor(kind="api_key", id="key_1", name="ops", request_id="r1", ip="192.0.2.1")


def record(store: Store, n: int, actor: Actor = KEY, **personal: Any) -> None:
    for i in range(n):
        with store.unit_of_work(actor) as unit:
            unit.record(
                Change(
                    action="license.update",
                    target=f"lic_{i}",
                    app_id="app_1",
                    data={"changes": {"plan": [None, f"p{i}"]}},
                    personal=personal,
                )
            )


def execute(store: Store, statement: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)


def by_seq(seq: int) -> sa.ColumnElement[bool]:
    return audit_events.c.seq == seq


def broken(store: Store) -> tuple[int, str]:
    result = store.audit.verify()
    assert result.broken is not None, "the tampering went unnoticed"
    return result.broken.seq, result.broken.breach


def test_an_intact_chain_verifies(store: Store) -> None:
    assert store.audit.verify().ok and store.audit.verify().count == 0
    record(store, 5, email="ann@example.com")
    result = store.audit.verify()
    assert (result.ok, result.count, result.head_seq) == (True, 5, 5)
    assert [e.seq for e in store.audit.list()] == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    "column, value",
    [
        ("data", {"changes": {"plan": [None, "free"]}}),
        ("action", "license.extend"),
        ("actor", "key_2"),
        ("actor_kind", "cli"),
        ("request_id", "r2"),
        ("target", "lic_other"),
        ("app_id", "app_2"),
        ("created_at", datetime(2020, 1, 1, tzinfo=UTC)),
        ("actor_ip", "192.0.2.99"),
        ("personal", {"email": "eve@example.com"}),
    ],
)
def test_an_edited_event_is_named(store: Store, column: str, value: Any) -> None:
    record(store, 5, email="ann@example.com")
    execute(store, sa.update(audit_events).where(by_seq(3)).values({column: value}))
    assert broken(store) == (3, "edited")


def test_a_deleted_event_is_named(store: Store) -> None:
    record(store, 5)
    execute(store, sa.delete(audit_events).where(by_seq(3)))
    assert broken(store) == (4, "deleted")


def test_a_deleted_event_with_renumbered_successors_is_still_deleted(store: Store) -> None:
    record(store, 5)
    execute(store, sa.delete(audit_events).where(by_seq(3)))
    for seq in (4, 5):
        execute(store, sa.update(audit_events).where(by_seq(seq)).values(seq=seq - 1))
    assert broken(store) == (3, "deleted")


def test_deleted_newest_events_are_named(store: Store) -> None:
    record(store, 5)
    execute(store, sa.delete(audit_events).where(audit_events.c.seq >= 4))
    assert broken(store) == (4, "deleted")


def test_swapped_events_are_named(store: Store) -> None:
    record(store, 5)
    for old, new in ((2, -2), (3, 2), (-2, 3)):  # through a free seq: it is unique
        execute(store, sa.update(audit_events).where(by_seq(old)).values(seq=new))
    assert broken(store) == (2, "reordered")


def test_a_rechained_edit_without_the_key_is_caught(store: Store) -> None:
    """Someone with database access only: they edit an event and recompute every MAC with a
    key of their own. The first event they touched no longer matches."""
    record(store, 3)
    forged = Store(store.engine)
    forged.audit.use_keys(AuditKeys.derive([("test", b"\x07" * 32)]))
    execute(store, sa.delete(audit_events))
    execute(store, sa.update(audit_head).values(seq=0, mac="0" * 64, head_mac=None))
    record(forged, 3)
    assert broken(store) == (1, "edited")


def test_an_unknown_key_is_named_and_a_rotated_key_still_verifies(store: Store) -> None:
    record(store, 2)
    rotated = AuditKeys.derive([("new", b"\x09" * 32), ("test", bytes(range(32)))])
    store.audit.use_keys(rotated)
    record(store, 2)
    assert store.audit.verify().ok and store.audit.verify().count == 4
    store.audit.use_keys(AuditKeys.derive([("new", b"\x09" * 32)]))
    assert broken(store) == (1, "unknown_key")


def test_erasing_personal_data_keeps_the_chain(store: Store) -> None:
    actor = Actor(kind="client", id="lic_0", ip="198.51.100.4", user_agent="sdk/1")
    record(store, 3, actor, hwuid="machine-1")
    assert store.audit.list()[0].personal == {"hwuid": "machine-1"}
    with store.database.write() as conn:
        assert store.audit.erase_personal(conn, targets=["lic_1"]) == 1
    erased = next(e for e in store.audit.list() if e.target == "lic_1")
    assert (erased.actor_ip, erased.actor_user_agent, erased.personal) == (None, None, None)
    assert store.audit.verify().ok


def test_prune_leaves_a_checkpoint_that_proves_the_rest(store: Store) -> None:
    record(store, 3)
    time.sleep(0.01)
    cutoff = datetime.now(UTC)
    record(store, 2)
    with store.unit_of_work(KEY) as unit:
        pruned = store.audit.prune(unit.conn, cutoff)
    assert (pruned.events, pruned.seq) == (3, 3)
    result = store.audit.verify()
    assert (result.ok, result.count, result.checkpoint_seq) == (True, 2, 3)
    assert sorted(e.seq for e in store.audit.list()) == [4, 5]
    # the checkpoint is signed ...
    execute(store, sa.update(audit_checkpoints).values(pruned=1))
    assert broken(store) == (3, "edited")
    # ... and deleting it leaves a gap
    execute(store, sa.delete(audit_checkpoints))
    assert broken(store) == (4, "deleted")


def test_prune_refuses_a_broken_chain(store: Store) -> None:
    record(store, 3)
    execute(store, sa.update(audit_events).where(by_seq(1)).values(action="x"))
    with pytest.raises(InvalidRequest, match="does not verify"), store.unit_of_work(KEY) as unit:
        store.audit.prune(unit.conn, datetime.now(UTC))
    assert len(store.audit.list()) == 3


# -- concurrent writers: real processes -------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from flask_licensechain.store import Actor, AuditKeys, Change, open_store

    url, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(url, busy_timeout=60)
    store.audit.use_keys(AuditKeys.derive([("test", bytes(range(32)))]))
    actor = Actor(kind="cli", id=f"worker-{worker}")
    for i in range(count):
        with store.unit_of_work(actor) as unit:
            unit.record(Change(action="app.update", target=f"{worker}-{i}"))
    store.dispose()
    """
)


def test_concurrent_writer_processes_keep_one_linear_chain(store: Store, tmp_path: Path) -> None:
    workers, each = 4, 25
    url = store.engine.url.render_as_string(hide_password=False)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    processes = [
        subprocess.Popen([sys.executable, str(script), url, str(n), str(each)])
        for n in range(workers)
    ]
    for process in processes:
        assert process.wait(timeout=120) == 0
    result = store.audit.verify()
    assert (result.ok, result.count) == (True, workers * each), result.as_json()
    events = store.audit.list(limit=1000)
    assert sorted(e.seq for e in events) == list(range(1, workers * each + 1))
    assert {e.target for e in events} == {f"{w}-{i}" for w in range(workers) for i in range(each)}


def test_a_store_without_a_key_refuses_to_write(store_url: str) -> None:
    bare = open_store(store_url)
    try:
        bare.upgrade_schema()
        with pytest.raises(RuntimeError, match="no MAC key"), bare.unit_of_work(KEY) as unit:
            unit.record(Change(action="app.create"))
    finally:
        bare.dispose()
