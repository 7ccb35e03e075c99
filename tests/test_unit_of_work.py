"""The unit of work (``store/changes.py``): a change and what is recorded with it commit or
roll back together, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_licensechain.core.errors import Conflict
from flask_licensechain.store import Actor, Change, Store
from flask_licensechain.store.schema import apps, audit_events

pytest_plugins = ["store_fixtures"]

ACTOR = Actor(kind="cli", id="tester")


class ListenerFailed(Exception):
    pass


def _count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_change_and_audit_event_commit_together(store: Store) -> None:
    with store.unit_of_work(ACTOR) as unit:
        app = store.apps.create("Joined")
        unit.record(Change(action="app.create", target=app.id, app_id=app.id))
    assert store.apps.get(app.id) is not None
    events = store.audit.list()
    assert [(e.action, e.actor, e.target) for e in events] == [("app.create", "tester", app.id)]


def test_a_failing_listener_rolls_the_change_back(store: Store) -> None:
    def refuse(conn: sa.Connection, actor: Actor, change: Change) -> None:
        raise ListenerFailed

    store.changes.add_listener(refuse)
    committed: list[str] = []
    with pytest.raises(ListenerFailed), store.unit_of_work(ACTOR) as unit:
        app = store.apps.create("Rolled back")
        unit.after_commit(lambda: committed.append("ran"))
        unit.record(Change(action="app.create", target=app.id))
    assert _count(store, apps) == 0
    assert _count(store, audit_events) == 0
    assert committed == []


def test_reads_inside_the_unit_see_its_rows_and_after_commit_runs_once(store: Store) -> None:
    committed: list[str] = []
    with store.unit_of_work(ACTOR) as unit:
        app = store.apps.create("Visible")
        assert store.apps.get(app.id) is not None  # single() joins the unit
        unit.after_commit(lambda: committed.append(app.id))
        with store.unit_of_work(Actor(kind="system", id="system")) as inner:
            assert inner is unit  # one service calling another shares the unit
        assert committed == []
    assert committed == [app.id]


def test_a_conflict_inside_the_unit_leaves_it_usable(store: Store) -> None:
    """A repository write is a savepoint of the unit: after its ``Conflict`` (PostgreSQL
    would otherwise abort the whole transaction) the unit goes on and commits."""
    first = store.apps.create("Taken")
    with store.unit_of_work(ACTOR) as unit:
        with pytest.raises(Conflict), store.database.write() as conn:
            conn.execute(sa.insert(apps).values(**_app_row(first.id)))
        second = store.apps.create("Other")
        unit.record(Change(action="app.create", target=second.id))
    assert store.apps.get(second.id) is not None
    assert [e.target for e in store.audit.list()] == [second.id]


def _app_row(app_id: str) -> dict[str, object]:
    with_id = {"id": app_id, "name": "dup", "slug": "dup-" + app_id, "tier": "free"}
    now = sa.func.now()
    return {**with_id, "created_at": now, "updated_at": now}


def test_committed_listeners_see_committed_changes_only(store: Store) -> None:
    seen: list[str] = []
    store.changes.add_committed_listener(lambda actor, change: seen.append(change.action))
    with store.unit_of_work(ACTOR) as unit:
        unit.record(Change(action="app.create", target="app_1"))
    with pytest.raises(ListenerFailed), store.unit_of_work(ACTOR) as unit:
        unit.record(Change(action="app.delete", target="app_1"))
        raise ListenerFailed
    assert seen == ["app.create"]
