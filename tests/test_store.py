"""The store's repositories, each test on SQLite (a file in tmp_path) and on PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import free_port
from test_store_api_keys import CONTRACT_SCOPES

from flask_licensechain.core.errors import Conflict, InvalidRequest, NotFound, Unavailable
from flask_licensechain.store import (
    API_KEY_SCOPES,
    SigningKeyRecord,
    Store,
    normalize_url,
    open_store,
)
from flask_licensechain.store import licenses as licenses_module
from flask_licensechain.store.licenses import LAST_SEEN_RESOLUTION
from flask_licensechain.store.schema import api_keys, devices, licenses

pytest_plugins = ["store_fixtures"]  # store_url, store (SQLite and PostgreSQL)
KEY_RE = re.compile(r"LC-[A-Z0-9]{6}-[A-Z0-9]{6}-[A-Z0-9]{6}")


def is_utc(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is UTC


def signing_record(kid: str, state: str = "active", **overrides: Any) -> SigningKeyRecord:
    values: dict[str, Any] = {
        "kid": kid,
        "public_jwk": {"kty": "RSA", "kid": kid, "n": "AQAB" + kid, "e": "AQAB"},
        "sealed_private_key": b"\x01sealed-" + kid.encode(),
        "state": state,
        "created_at": datetime(2030, 1, 1, tzinfo=UTC),
        "retired_at": None,
        "expires_at": None,
    }
    values.update(overrides)
    return SigningKeyRecord(**values)


class StatementLog:
    """What the database server was actually asked, per pooled connection checkout.

    SQLite: every statement (sqlite3's trace callback). PostgreSQL: every request cycle
    (``ReadyForQuery`` messages in libpq's protocol trace), i.e. round trips.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.statements: list[str] = []
        self.round_trips = 0  # PostgreSQL only
        self._trace_files: list[Any] = []

    def __enter__(self) -> StatementLog:
        sa.event.listen(self.store.engine, "checkout", self._on_checkout)
        sa.event.listen(self.store.engine, "checkin", self._on_checkin)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.store.engine, "checkout", self._on_checkout)
        sa.event.remove(self.store.engine, "checkin", self._on_checkin)

    def _on_checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if self.store.backend == "sqlite":
            dbapi_connection.set_trace_callback(self.statements.append)
        else:
            import psycopg

            trace = tempfile.TemporaryFile()
            self._trace_files.append(trace)
            dbapi_connection.pgconn.trace(trace.fileno())
            dbapi_connection.pgconn.set_trace_flags(
                psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
            )

    def _on_checkin(self, dbapi_connection: Any, _record: Any) -> None:
        if self.store.backend == "sqlite":
            dbapi_connection.set_trace_callback(None)
            return
        dbapi_connection.pgconn.untrace()
        trace = self._trace_files.pop()
        trace.seek(0)
        lines = trace.read().decode(errors="replace").splitlines()
        trace.close()
        for line in lines:
            # One Query (simple protocol) or one Bind (extended protocol) per statement run.
            if line.startswith("F\t") and ("\tQuery\t" in line or "\tBind\t" in line):
                self.statements.append(line.split("\t")[2])
        self.round_trips += sum(1 for line in lines if "\tReadyForQuery\t" in line)


# --- engine and schema ---------------------------------------------------------------------


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgres://u@h:5432/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", busy_timeout=2.5)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        store.dispose()


def test_sqlite_writes_begin_immediate_and_reads_do_not(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    store.upgrade_schema()
    try:
        with StatementLog(store) as log:
            app = store.apps.create("Writer")
        assert log.statements[0] == "BEGIN IMMEDIATE"
        assert log.statements[-1] == "COMMIT"
        with StatementLog(store) as log:
            assert store.apps.get(app.id) == app
        assert [s.split()[0] for s in log.statements] == ["SELECT"]
    finally:
        store.dispose()


def test_upgrade_schema_is_idempotent(store: Store) -> None:
    app = store.apps.create("Kept")
    store.upgrade_schema()
    store.upgrade_schema()
    assert store.apps.list() == [app]
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"lc_apps", "lc_licenses", "lc_devices", "lc_api_keys", "lc_signing_keys"} <= names


def test_foreign_keys_are_enforced(store: Store) -> None:
    now = datetime.now(UTC)
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.insert(devices).values(
                license_id="lic_missing", hwuid="h", bound_at=now, last_seen_at=now
            )
        )


def test_ping_answers_when_up(store: Store) -> None:
    store.ping()  # raises when down; nothing to return when up
    assert store.backend in ("sqlite", "postgresql")


def test_unreachable_postgres_is_unavailable() -> None:
    store = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    try:
        with pytest.raises(Unavailable):
            store.ping()
        with pytest.raises(Unavailable):
            store.apps.list()
        with pytest.raises(Unavailable):
            store.licenses.find_for_verification("LC-AAAAAA-BBBBBB-CCCCCC")
        with pytest.raises(Unavailable):
            store.apps.create("Nope")
    finally:
        store.dispose()


def test_unopenable_sqlite_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        with pytest.raises(Unavailable):
            store.ping()
        with pytest.raises(Unavailable):
            store.licenses.find_for_verification("LC-AAAAAA-BBBBBB-CCCCCC")
    finally:
        store.dispose()


# --- apps ----------------------------------------------------------------------------------


def test_app_create_get_list(store: Store) -> None:
    before = datetime.now(UTC)
    app = store.apps.create("  Acme Editor  ", description="The editor", tier="pro")
    assert re.fullmatch(r"app_[0-9a-f]{24}", app.id)
    assert (app.name, app.slug, app.description, app.tier) == (
        "Acme Editor",
        "acme-editor",
        "The editor",
        "pro",
    )
    assert is_utc(app.created_at) and app.created_at == app.updated_at
    assert before <= app.created_at <= datetime.now(UTC)
    assert store.apps.get(app.id) == app
    other = store.apps.create("Other")
    assert (other.tier, other.description) == ("free", None)
    assert store.apps.list() == [app, other]


def test_app_slugs_are_unique_and_readable(store: Store) -> None:
    slugs = [store.apps.create(name).slug for name in ["My App", "my app!", "MY--APP"]]
    assert slugs == ["my-app", "my-app-2", "my-app-3"]
    assert store.apps.create("Café Über").slug == "cafe-uber"
    assert store.apps.create("!!!").slug == "app"
    assert store.apps.create("%_%").slug == "app-2"  # LIKE wildcards are escaped
    long_slug = store.apps.create("x" * 150).slug
    assert long_slug == "x" * 64
    assert store.apps.create("x" * 150).slug == "x" * 56 + "-2"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("",), {}),
        (("   ",), {}),
        ((None,), {}),
        ((42,), {}),
        (("a\x00b",), {}),
        (("x" * 201,), {}),
        (("ok",), {"tier": "platinum"}),
        (("ok",), {"tier": None}),
        (("ok",), {"description": 5}),
        (("ok",), {"description": "d" * 2001}),
    ],
)
def test_app_create_rejects_bad_input(store: Store, args: tuple[Any, ...], kwargs: Any) -> None:
    with pytest.raises(InvalidRequest):
        store.apps.create(*args, **kwargs)
    assert store.apps.list() == []


def test_app_get_unknown(store: Store) -> None:
    assert store.apps.get("app_000000000000000000000000") is None
    assert store.apps.get(123) is None  # type: ignore[arg-type]
    assert store.apps.get("' OR 1=1 --") is None


# --- licenses ------------------------------------------------------------------------------


def test_license_create_and_lookups(store: Store) -> None:
    app = store.apps.create("Licensed", tier="business")
    expires = datetime(2031, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    lic = store.licenses.create(
        app.id,
        plan="pro",
        issued_to="Ada",
        issued_email="ada@example.com",
        expires_at=expires,
        features=["export", "sync", "export"],
        metadata={"seats": 3, "tags": ["a"], "nested": {"ok": True}},
        max_devices=2,
        require_hwuid=True,
    )
    assert re.fullmatch(r"lic_[0-9a-f]{24}", lic.id)
    assert KEY_RE.fullmatch(lic.key)
    assert lic.app_id == app.id
    assert (lic.plan, lic.status, lic.issued_to, lic.issued_email) == (
        "pro",
        "ACTIVE",
        "Ada",
        "ada@example.com",
    )
    assert lic.expires_at == datetime(2031, 6, 1, 10, 0, tzinfo=UTC)
    assert is_utc(lic.expires_at) and is_utc(lic.created_at) and is_utc(lic.updated_at)
    assert lic.features == ("export", "sync")
    assert lic.metadata == {"seats": 3, "tags": ["a"], "nested": {"ok": True}}
    assert (lic.max_devices, lic.require_hwuid, lic.devices) == (2, True, ())
    assert store.licenses.get(lic.id) == lic
    assert store.licenses.get_by_key(lic.key) == lic
    assert store.licenses.get_by_key(f"  {lic.key.lower()} ") == lic
    assert store.licenses.get_by_id_or_key(lic.id) == lic
    assert store.licenses.get_by_id_or_key(lic.key) == lic


def test_license_defaults_and_naive_datetimes_are_utc(store: Store) -> None:
    app = store.apps.create("Defaults")
    lic = store.licenses.create(app.id, expires_at=datetime(2030, 1, 1, 8, 30))
    assert lic.expires_at == datetime(2030, 1, 1, 8, 30, tzinfo=UTC)
    assert (lic.plan, lic.issued_to, lic.features, lic.metadata) == (None, None, (), {})
    assert (lic.max_devices, lic.require_hwuid, lic.status) == (1, False, "ACTIVE")
    assert store.licenses.get(lic.id) == lic
    perpetual = store.licenses.create(app.id)
    assert store.licenses.get(perpetual.id).expires_at is None  # type: ignore[union-attr]


def test_license_keys_are_distinct(store: Store) -> None:
    app = store.apps.create("Many")
    keys = {store.licenses.create(app.id).key for _ in range(50)}
    assert len(keys) == 50 and all(KEY_RE.fullmatch(k) for k in keys)


def test_license_lookups_of_unknown_or_hostile_values(store: Store) -> None:
    app = store.apps.create("Lookup")
    store.licenses.create(app.id)
    for value in [
        "LC-AAAAAA-AAAAAA-AAAAAA",
        "lic_000000000000000000000000",
        "",
        "' OR '1'='1",
        "%",
        "LC-" + "A" * 5000,
        "\x00",
    ]:
        assert store.licenses.get_by_key(value) is None
        assert store.licenses.get_by_id_or_key(value) is None
        assert store.licenses.find_for_verification(value) is None
    wrong_types: list[Any] = [None, 7, b"LC-AAAAAA-AAAAAA-AAAAAA", ["x"]]
    for wrong in wrong_types:
        assert store.licenses.get_by_key(wrong) is None
        assert store.licenses.get(wrong) is None
        assert store.licenses.find_for_verification(wrong) is None


def test_license_for_unknown_app_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.licenses.create("app_000000000000000000000000")
    with pytest.raises(NotFound):
        store.licenses.create(None)  # type: ignore[arg-type]
    assert store.licenses.list() == ([], 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_devices": 0},
        {"max_devices": -1},
        {"max_devices": True},
        {"max_devices": "3"},
        {"max_devices": 2**40},
        {"require_hwuid": "yes"},
        {"features": "export"},
        {"features": [1]},
        {"features": [""]},
        {"features": ["f\x00"]},
        {"metadata": ["not", "an", "object"]},
        {"metadata": {"x": float("nan")}},
        {"metadata": {"x": object()}},
        {"metadata": {"blob": "x" * 20000}},
        {"plan": 5},
        {"plan": "p\x00"},
        {"issued_email": "e" * 400},
        {"expires_at": "2030-01-01"},
    ],
)
def test_license_create_rejects_bad_input(store: Store, kwargs: dict[str, Any]) -> None:
    app = store.apps.create("Strict")
    with pytest.raises(InvalidRequest):
        store.licenses.create(app.id, **kwargs)
    assert store.licenses.list() == ([], 0)


def test_license_key_collision_is_retried(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    app = store.apps.create("Collide")
    first = store.licenses.create(app.id)
    fresh = "LC-ZZZZZZ-ZZZZZZ-ZZZZZZ"
    keys = iter([first.key, first.key, fresh])
    monkeypatch.setattr(licenses_module, "new_license_key", lambda: next(keys))
    assert store.licenses.create(app.id).key == fresh


def test_license_key_collision_forever_is_a_conflict_and_changes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = store.apps.create("Collide")
    first = store.licenses.create(app.id)
    monkeypatch.setattr(licenses_module, "new_license_key", lambda: first.key)
    with pytest.raises(Conflict):
        store.licenses.create(app.id)
    assert store.licenses.list() == ([first], 1)


def test_duplicate_key_is_refused_by_the_database(store: Store) -> None:
    app = store.apps.create("Unique")
    lic = store.licenses.create(app.id)
    other = store.licenses.create(app.id)
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.update(licenses).where(licenses.c.id == other.id).values(key=lic.key))
    assert store.licenses.get(other.id) == other


def test_find_for_verification(store: Store) -> None:
    app = store.apps.create("Verify", tier="enterprise")
    lic = store.licenses.create(app.id, plan="team", features=["a"], max_devices=3)
    store.licenses.create(app.id)  # a neighbour that must not leak in
    now = datetime(2030, 1, 1, tzinfo=UTC)
    store.licenses.bind_device(lic.id, "hw-2", now + timedelta(seconds=1))
    store.licenses.bind_device(lic.id, "hw-1", now)
    found = store.licenses.find_for_verification(lic.key)
    assert found is not None
    found_license, found_app = found
    assert found_app == app
    assert found_license == store.licenses.get(lic.id)
    assert [d.hwuid for d in found_license.devices] == ["hw-1", "hw-2"]
    assert found_license.devices[0].bound_at == now and is_utc(found_license.devices[0].bound_at)
    assert store.licenses.find_for_verification(lic.key.lower()) == found
    no_devices = store.licenses.create(app.id, expires_at=now)
    assert store.licenses.find_for_verification(no_devices.key) == (no_devices, app)


def test_find_for_verification_is_one_round_trip(store: Store) -> None:
    app = store.apps.create("Hot path")
    lic = store.licenses.create(app.id, max_devices=2)
    store.licenses.bind_device(lic.id, "a", datetime.now(UTC))
    store.licenses.bind_device(lic.id, "b", datetime.now(UTC))
    store.licenses.find_for_verification(lic.key)  # warm: compile once
    with StatementLog(store) as log:
        found = store.licenses.find_for_verification(lic.key)
    assert found is not None and len(found[0].devices) == 2
    if store.backend == "sqlite":
        assert len(log.statements) == 1 and log.statements[0].startswith("SELECT")
    else:
        assert log.statements == ["Bind"]  # no BEGIN, no ROLLBACK
        assert log.round_trips == 1


def test_license_list_filters_and_pages(store: Store) -> None:
    one, two = store.apps.create("One"), store.apps.create("Two")
    now = datetime.now(UTC)
    active = store.licenses.create(one.id)
    future = store.licenses.create(one.id, expires_at=now + timedelta(days=1))
    expired = store.licenses.create(one.id, expires_at=now - timedelta(seconds=1))
    suspended = store.licenses.create(two.id)
    revoked = store.licenses.create(two.id, expires_at=now - timedelta(days=1))
    suspended = store.licenses.set_status(suspended.id, "SUSPENDED")  # type: ignore[assignment]
    revoked = store.licenses.set_status(revoked.id, "REVOKED")  # type: ignore[assignment]
    store.licenses.bind_device(future.id, "dev", now)
    future = store.licenses.get(future.id)  # type: ignore[assignment]
    everything = sorted(
        [active, future, expired, suspended, revoked],
        key=lambda r: (r.created_at, r.id),
        reverse=True,
    )

    def ids(result: tuple[list[Any], int]) -> tuple[list[str], int]:
        return [r.id for r in result[0]], result[1]

    assert store.licenses.list() == (everything, 5)
    assert ids(store.licenses.list(status="ACTIVE")) == ([future.id, active.id], 2)
    assert ids(store.licenses.list(status="expired")) == ([expired.id], 1)
    assert ids(store.licenses.list(status="SUSPENDED")) == ([suspended.id], 1)
    assert ids(store.licenses.list(status="REVOKED")) == ([revoked.id], 1)  # revoked wins
    assert ids(store.licenses.list(app_id=two.id)) == ([revoked.id, suspended.id], 2)
    assert ids(store.licenses.list(app_id=one.id, status="EXPIRED")) == ([expired.id], 1)
    later = now + timedelta(days=2)
    assert ids(store.licenses.list(status="EXPIRED", now=later)) == (
        [expired.id, future.id],
        2,
    )
    assert store.licenses.list(page=1, limit=2) == (everything[:2], 5)
    assert store.licenses.list(page=3, limit=2) == (everything[4:], 5)
    assert store.licenses.list(page=4, limit=2) == ([], 5)
    assert store.licenses.list(app_id="app_unknown") == ([], 0)
    listed_future = next(r for r in store.licenses.list()[0] if r.id == future.id)
    assert [d.hwuid for d in listed_future.devices] == ["dev"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "DELETED"},
        {"status": 3},
        {"page": 0},
        {"page": "1"},
        {"limit": 0},
        {"limit": 1001},
        {"app_id": 5},
    ],
)
def test_license_list_rejects_bad_filters(store: Store, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        store.licenses.list(**kwargs)


def test_license_update(store: Store) -> None:
    app = store.apps.create("Update")
    lic = store.licenses.create(app.id, plan="basic")
    new_expiry = datetime(2032, 2, 2, tzinfo=UTC)
    updated = store.licenses.update(
        lic.id,
        plan="gold",
        issued_to="Grace",
        issued_email="g@example.com",
        expires_at=new_expiry,
        features=["x"],
        metadata={"k": "v"},
        max_devices=4,
        require_hwuid=True,
    )
    assert updated is not None
    assert (updated.plan, updated.issued_to, updated.issued_email) == (
        "gold",
        "Grace",
        "g@example.com",
    )
    assert (updated.expires_at, updated.features, updated.metadata) == (
        new_expiry,
        ("x",),
        {"k": "v"},
    )
    assert (updated.max_devices, updated.require_hwuid) == (4, True)
    assert (updated.key, updated.created_at, updated.status) == (lic.key, lic.created_at, "ACTIVE")
    assert updated.updated_at >= lic.updated_at
    assert store.licenses.get(lic.id) == updated
    cleared = store.licenses.update(lic.id, plan=None, expires_at=None)
    assert cleared is not None and (cleared.plan, cleared.expires_at) == (None, None)
    assert store.licenses.update("lic_000000000000000000000000", plan="x") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "REVOKED"},
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA"},
        {"app_id": "app_x"},
        {"max_devices": 0},
        {"features": "x"},
        {"metadata": {"x": float("inf")}},
    ],
)
def test_license_update_rejects_bad_changes(store: Store, changes: dict[str, Any]) -> None:
    app = store.apps.create("Update")
    lic = store.licenses.create(app.id)
    with pytest.raises(InvalidRequest):
        store.licenses.update(lic.id, **changes)
    assert store.licenses.get(lic.id) == lic


def test_license_set_status(store: Store) -> None:
    app = store.apps.create("Status")
    lic = store.licenses.create(app.id)
    for status in ("SUSPENDED", "REVOKED", "ACTIVE"):
        changed = store.licenses.set_status(lic.id, status)
        assert changed is not None and changed.status == status
        assert store.licenses.get(lic.id) == changed
    for bad in ("EXPIRED", "active", "", None):
        with pytest.raises(InvalidRequest):
            store.licenses.set_status(lic.id, bad)  # type: ignore[arg-type]
    assert store.licenses.set_status("lic_000000000000000000000000", "REVOKED") is None


def test_bind_and_release_devices(store: Store) -> None:
    app = store.apps.create("Devices")
    lic = store.licenses.create(app.id, max_devices=2)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    first = store.licenses.bind_device(lic.id, "hw-a", t0)
    assert (first.result, first.ok, [d.hwuid for d in first.devices]) == ("bound", True, ["hw-a"])
    assert first.devices[0].bound_at == first.devices[0].last_seen_at == t0
    second = store.licenses.bind_device(lic.id, "hw-b", t0 + timedelta(seconds=1))
    assert (second.result, [d.hwuid for d in second.devices]) == ("bound", ["hw-a", "hw-b"])
    full = store.licenses.bind_device(lic.id, "hw-c", t0 + timedelta(seconds=2))
    assert (full.result, full.ok, len(full.devices)) == ("full", False, 2)
    # Known and seen recently: no write, last_seen_at unchanged.
    soon = store.licenses.bind_device(lic.id, "hw-a", t0 + timedelta(seconds=3))
    assert (soon.result, soon.devices[0].last_seen_at) == ("known", t0)
    # Known and not seen for a while: last_seen_at moves on, bound_at stays.
    later = t0 + LAST_SEEN_RESOLUTION + timedelta(seconds=1)
    known = store.licenses.bind_device(lic.id, "hw-a", later)
    assert (known.result, known.devices[0].bound_at, known.devices[0].last_seen_at) == (
        "known",
        t0,
        later,
    )
    stored = store.licenses.get(lic.id)
    assert stored is not None and stored.devices == known.devices
    assert store.licenses.release_device(lic.id, "hw-a") is True
    assert store.licenses.release_device(lic.id, "hw-a") is False
    assert store.licenses.bind_device(lic.id, "hw-c", later).result == "bound"
    assert [d.hwuid for d in store.licenses.get(lic.id).devices] == ["hw-b", "hw-c"]  # type: ignore[union-attr]


def test_lowering_max_devices_keeps_bound_devices_but_binds_no_more(store: Store) -> None:
    app = store.apps.create("Shrink")
    lic = store.licenses.create(app.id, max_devices=2)
    now = datetime.now(UTC)
    store.licenses.bind_device(lic.id, "a", now)
    store.licenses.bind_device(lic.id, "b", now)
    store.licenses.update(lic.id, max_devices=1)
    assert store.licenses.bind_device(lic.id, "a", now).result == "known"
    assert store.licenses.bind_device(lic.id, "c", now).result == "full"
    assert store.licenses.release_device(lic.id, "a")
    assert store.licenses.bind_device(lic.id, "c", now).result == "full"  # b still holds 1/1


def test_bind_device_bad_input(store: Store) -> None:
    app = store.apps.create("Bad binds")
    lic = store.licenses.create(app.id, max_devices=5)
    now = datetime.now(UTC)
    for hwuid in ["", "   ", "x" * 257, "a\x00b", None, 12, b"bytes"]:
        with pytest.raises(InvalidRequest):
            store.licenses.bind_device(lic.id, hwuid, now)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        store.licenses.bind_device("lic_000000000000000000000000", "hw", now)
    with pytest.raises(NotFound):
        store.licenses.bind_device(None, "hw", now)  # type: ignore[arg-type]
    assert store.licenses.get(lic.id).devices == ()  # type: ignore[union-attr]
    assert store.licenses.release_device(lic.id, None) is False  # type: ignore[arg-type]
    odd = "' OR 1=1; DROP TABLE lc_devices; --"
    assert store.licenses.bind_device(lic.id, odd, now).result == "bound"
    assert store.licenses.get(lic.id).devices[0].hwuid == odd  # type: ignore[union-attr]


# --- API keys ------------------------------------------------------------------------------


def test_api_key_create_shows_plaintext_once_and_stores_a_hash(store: Store) -> None:
    record, plaintext = store.api_keys.create("ci", ["licenses:read", "apps:read", "apps:read"])
    assert re.fullmatch(r"lc_live_[A-Za-z0-9_-]{43}", plaintext)
    assert re.fullmatch(r"key_[0-9a-f]{24}", record.id)
    assert (record.name, record.prefix, record.scopes, record.environment) == (
        "ci",
        plaintext[:12],
        ("licenses:read", "apps:read"),
        "live",
    )
    assert is_utc(record.created_at) and record.last_used_at is None and not record.revoked
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == record.id)).one()
    assert row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in repr(tuple(row)) and plaintext not in repr(record)
    _, test_key = store.api_keys.create("sandbox", ["*"], environment="test")
    assert re.fullmatch(r"lc_test_[A-Za-z0-9_-]{43}", test_key)


def test_api_key_authenticate_and_revoke(store: Store) -> None:
    record, plaintext = store.api_keys.create("admin", ["*"])
    authed = store.api_keys.authenticate(plaintext)
    assert authed is not None and authed.id == record.id and authed.scopes == ("*",)
    store.api_keys.usage.flush()  # usage is written in batches
    used = store.api_keys.list()[0]
    assert is_utc(used.last_used_at) and used.usage_count == 1
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert store.api_keys.authenticate(tampered) is None
    assert store.api_keys.authenticate(plaintext.replace("lc_live_", "lc_test_")) is None
    assert store.api_keys.revoke(record.id) is True
    assert store.api_keys.authenticate(plaintext) is None
    assert store.api_keys.revoke(record.id) is False
    assert store.api_keys.revoke("key_000000000000000000000000") is False
    listed = store.api_keys.list()
    assert [k.id for k in listed] == [record.id] and listed[0].revoked


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        42,
        b"lc_live_" + b"a" * 43,
        "",
        "lc_live_",
        "lc_live_short",
        "Bearer lc_live_" + "a" * 43,
        "lc_live_" + "é" * 43,
        "lc_live_" + "a" * 42 + "\x00",
        "lc_live_" + "a" * 100_000,
        "lc_prod_" + "a" * 43,
        "' OR 1=1 --" + "a" * 43,
    ],
)
def test_api_key_authenticate_never_raises(store: Store, hostile: Any) -> None:
    store.api_keys.create("real", ["*"])
    assert store.api_keys.authenticate(hostile) is None


@pytest.mark.parametrize(
    ("name", "scopes", "environment"),
    [
        ("k", ["apps:read", "root"], "live"),
        ("k", [], "live"),
        ("k", "apps:read", "live"),
        ("k", [None], "live"),
        ("k", ["*"], "prod"),
        ("", ["*"], "live"),
        ("k\x00", ["*"], "live"),
    ],
)
def test_api_key_create_rejects_bad_input(
    store: Store, name: Any, scopes: Any, environment: Any
) -> None:
    with pytest.raises(InvalidRequest):
        store.api_keys.create(name, scopes, environment=environment)
    assert store.api_keys.list() == []


def test_every_contract_scope_is_accepted(store: Store) -> None:
    record, _ = store.api_keys.create("all", list(CONTRACT_SCOPES))
    assert record.scopes == CONTRACT_SCOPES == API_KEY_SCOPES


# --- signing keys --------------------------------------------------------------------------


def test_signing_key_add_active_and_one_active_rule(store: Store) -> None:
    assert store.signing_keys.active() is None
    first = signing_record("kid-1")
    store.signing_keys.add(first)
    assert store.signing_keys.active() == first
    with pytest.raises(Conflict):
        store.signing_keys.add(signing_record("kid-2"))  # a second active key
    with pytest.raises(Conflict):
        store.signing_keys.add(signing_record("kid-1", state="retired"))  # same kid
    with pytest.raises(InvalidRequest):
        store.signing_keys.add(signing_record("kid-3", state="zombie"))
    assert store.signing_keys.trusted(datetime.now(UTC)) == [first]


def test_signing_key_rotation_and_retirement(store: Store) -> None:
    old = signing_record("kid-old")
    store.signing_keys.add(old)
    now = datetime(2030, 5, 1, tzinfo=UTC)
    dies = now + timedelta(days=1, seconds=30)
    new = signing_record("kid-new", created_at=now)
    store.signing_keys.rotate(new, now=now, old_expires_at=dies)
    assert store.signing_keys.active() == new
    retiring = store.signing_keys.get("kid-old")
    assert retiring is not None
    assert (retiring.state, retiring.retired_at, retiring.expires_at) == ("retiring", now, dies)
    assert retiring.sealed_private_key == old.sealed_private_key
    assert store.signing_keys.trusted(now) == [new, retiring]
    assert store.signing_keys.trusted(dies) == [new]
    assert store.signing_keys.retire_expired(dies - timedelta(seconds=1)) == 0
    assert store.signing_keys.retire_expired(dies) == 1
    retired = store.signing_keys.get("kid-old")
    assert retired is not None
    assert (retired.state, retired.sealed_private_key) == ("retired", None)
    assert store.signing_keys.retire_expired(dies) == 0
    assert store.signing_keys.active() == new


def test_rotation_to_a_known_kid_changes_nothing(store: Store) -> None:
    current = signing_record("kid-a")
    store.signing_keys.add(current)
    now = datetime.now(UTC)
    with pytest.raises(Conflict):
        store.signing_keys.rotate(current, now=now, old_expires_at=now)
    assert store.signing_keys.active() == current
    assert store.signing_keys.trusted(now) == [current]


def test_signing_key_stores_real_sealed_keys(store: Store) -> None:
    from flask_licensechain.core.keys import (
        SigningKey,
        new_encryption_key_text,
        parse_encryption_key,
        seal_private_key,
        unseal_private_key,
    )

    key = SigningKey.generate()
    secret = parse_encryption_key(new_encryption_key_text())
    record = SigningKeyRecord(
        kid=key.kid,
        public_jwk=key.jwk(),
        sealed_private_key=seal_private_key(key.private_key, key.kid, secret),
        state="active",
        created_at=datetime.now(UTC),
        retired_at=None,
        expires_at=None,
    )
    store.signing_keys.add(record)
    loaded = store.signing_keys.active()
    assert loaded is not None and loaded.public_jwk == key.jwk()
    assert loaded.sealed_private_key is not None
    restored = unseal_private_key(loaded.sealed_private_key, loaded.kid, secret)
    assert restored.private_numbers() == key.private_key.private_numbers()
    assert "sealed" not in repr(loaded)


# --- audit ---------------------------------------------------------------------------------


def test_audit_record_and_list(store: Store) -> None:
    store.audit.record("app.create", actor="key_1", target="app_1", data={"name": "A"})
    store.audit.record("license.revoke", target="lic_1")
    store.audit.record("keys.rotate")
    events = store.audit.list()
    assert [(e.action, e.actor, e.target, e.data) for e in events] == [
        ("keys.rotate", "system", None, {}),
        ("license.revoke", "system", "lic_1", {}),
        ("app.create", "key_1", "app_1", {"name": "A"}),
    ]
    assert {e.actor_kind for e in events} == {"system"}
    assert [e.seq for e in events] == [3, 2, 1]  # chained (store/audit.py)
    assert all(is_utc(e.created_at) for e in events)
    assert events[0].id > events[1].id > events[2].id
    assert [e.action for e in store.audit.list(limit=1)] == ["keys.rotate"]
    with pytest.raises(InvalidRequest):
        store.audit.record("")
    with pytest.raises(InvalidRequest):
        store.audit.record("x", data={"bad": float("nan")})
    with pytest.raises(InvalidRequest):
        store.audit.list(limit=0)
    assert len(store.audit.list()) == 3


# --- in-memory SQLite, for other tests' convenience ----------------------------------------


def test_in_memory_sqlite_shares_one_database() -> None:
    store = open_store("sqlite://")
    store.upgrade_schema()
    try:
        app = store.apps.create("Memory")
        lic = store.licenses.create(app.id)
        assert store.licenses.find_for_verification(lic.key) == (lic, app)
    finally:
        store.dispose()


def test_the_hot_path_reads_answer_alike_with_and_without_the_cursor_bypass(
    store: Store, store_url: str
) -> None:
    """The verify reads on the driver's cursor decode exactly as SQLAlchemy's own path."""
    app = store.apps.create("Twin", tier="business")
    lic = store.licenses.create(
        app.id,
        plan="pro",
        features=["a", "b"],
        metadata={"n": 1},
        max_devices=2,
        expires_at=datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    now = datetime.now(UTC)
    store.licenses.bind_device(lic.id, "hw-1", now)
    public = open_store(store_url)
    public.licenses.bypass_core = False
    try:
        bypassed = store.licenses.find_for_verification(lic.key)
        assert bypassed is not None
        assert public.licenses.find_for_verification(lic.key) == bypassed
        assert bypassed[0].devices[0].hwuid == "hw-1"
        assert public.licenses.find_for_verification("LC-AAAAAA-BBBBBB-CCCCCC") is None
        assert public.licenses.bind_device(lic.id, "hw-1", now) == store.licenses.bind_device(
            lic.id, "hw-1", now
        )
        assert public.licenses.bind_device(lic.id, "hw-2", now).ok
        assert store.licenses.bind_device(lic.id, "hw-3", now).ok is False  # both slots used
    finally:
        public.dispose()
