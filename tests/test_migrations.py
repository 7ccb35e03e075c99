"""Schema migrations (``flask_licensechain/migrations``, ``store/migrate.py``, ``cli_db.py``).

Generic over future revisions: a store is created at revision 0001 and filled with rows written
as revision 0001 stored them (frozen here), then migrated to whatever the head is, and read back
through today's repositories and a running server. Downgrade to 0001 and back keeps the data.
The migrated schema must equal ``store/schema.py``. Refusals (store older or newer than the
code) use a test-only revision after the head in a copy of the script directory; it rebuilds a table
that others refer to, as SQLite batch migrations do, to prove no row is lost on the way.
Everything runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import shutil
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo
from issuer_support import TEST_ENCRYPTION_KEY, close_issuer, make_issuer

from flask_licensechain import LicenseChain
from flask_licensechain.cli import licensechain_cli
from flask_licensechain.core.keys import SigningKey, parse_encryption_key, seal_private_key
from flask_licensechain.store import SchemaVersionError, Store, migrate, open_store
from flask_licensechain.store.schema import metadata

REV1 = "0001"
PACKAGE_MIGRATIONS = Path(migrate.__file__).resolve().parent.parent / "migrations"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrate.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.dispose()


def version_rows(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return [
            row[0] for row in conn.execute(sa.text("SELECT version_num FROM lc_schema_version"))
        ]


def lc_tables(store: Store) -> set[str]:
    return {t for t in sa.inspect(store.engine).get_table_names() if t.startswith("lc_")}


# -- revision 0001's rows, as that revision stored them ------------------------------------

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
FAR = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
API_KEY = "lc_live_" + "Rev1Key" * 6 + "x"  # 43 random characters in a real key
REVOKED_API_KEY = "lc_test_" + "Gone" * 10 + "xyz"


@dataclass
class Rev1Data:
    kid: str
    rows: dict[str, list[dict[str, Any]]]


def rev1_time(store: Store, value: datetime) -> Any:
    """``UTCDateTime`` at revision 0001: fixed-width UTC text on SQLite, timestamptz elsewhere."""
    if store.backend == "sqlite":
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


def fill_rev1(store: Store) -> Rev1Data:
    """Rows of every revision-0001 table, written with that revision's columns only."""
    key = SigningKey.generate(2048)
    old_key = SigningKey.generate(2048)
    sealing = parse_encryption_key(TEST_ENCRYPTION_KEY)
    t = lambda value: rev1_time(store, value)  # noqa: E731
    rows: dict[str, list[dict[str, Any]]] = {
        "lc_apps": [
            {
                "id": "app_rev1",
                "name": "Rev 1 App",
                "slug": "rev-1-app",
                "description": "made at revision 0001",
                "tier": "pro",
                "created_at": t(T0),
                "updated_at": t(T0 + timedelta(seconds=1)),
            }
        ],
        "lc_licenses": [
            {
                "id": "lic_rev1",
                "app_id": "app_rev1",
                "key": "LC-REV1AA-REV1BB-REV1CC",
                "plan": "pro",
                "status": "ACTIVE",
                "issued_to": "Ada Lovelace",
                "issued_email": "ada@example.com",
                "expires_at": t(FAR),
                "features": ["export", "sync"],
                "meta": {"seats": 3, "nested": {"ok": True}},
                "max_devices": 2,
                "require_hwuid": False,
                "created_at": t(T0),
                "updated_at": t(T0),
            },
            {
                "id": "lic_rev1_revoked",
                "app_id": "app_rev1",
                "key": "LC-REV1DD-REV1EE-REV1FF",
                "plan": None,
                "status": "REVOKED",
                "issued_to": None,
                "issued_email": None,
                "expires_at": None,
                "features": [],
                "meta": {},
                "max_devices": 1,
                "require_hwuid": True,
                "created_at": t(T0 + timedelta(minutes=1)),
                "updated_at": t(T0 + timedelta(minutes=2)),
            },
        ],
        "lc_devices": [
            {
                "license_id": "lic_rev1",
                "hwuid": "machine-1",
                "bound_at": t(T0),
                "last_seen_at": t(T0 + timedelta(hours=1)),
            }
        ],
        "lc_api_keys": [
            {
                "id": "key_rev1",
                "name": "rev 1 admin",
                "prefix": API_KEY[:12],
                "key_hash": hashlib.sha256(API_KEY.encode()).hexdigest(),
                "environment": "live",
                "scopes": ["*"],
                "created_at": t(T0),
                "last_used_at": None,
                "revoked_at": None,
            },
            {
                "id": "key_rev1_revoked",
                "name": "rev 1 revoked",
                "prefix": REVOKED_API_KEY[:12],
                "key_hash": hashlib.sha256(REVOKED_API_KEY.encode()).hexdigest(),
                "environment": "test",
                "scopes": ["licenses:read", "audit:read"],
                "created_at": t(T0),
                "last_used_at": t(T0 + timedelta(days=1)),
                "revoked_at": t(T0 + timedelta(days=2)),
            },
        ],
        "lc_signing_keys": [
            {
                "kid": key.kid,
                "public_jwk": key.jwk(),
                "sealed_private_key": seal_private_key(key.private_key, key.kid, sealing),
                "state": "active",
                "created_at": t(T0),
                "retired_at": None,
                "expires_at": None,
            },
            {
                "kid": old_key.kid,
                "public_jwk": old_key.jwk(),
                "sealed_private_key": None,
                "state": "retired",
                "created_at": t(T0 - timedelta(days=9)),
                "retired_at": t(T0 - timedelta(days=8)),
                "expires_at": t(T0 - timedelta(days=7)),
            },
        ],
        "lc_audit_events": [
            {
                "id": 1,
                "action": "license.create",
                "actor": "cli",
                "target": "lic_rev1",
                "data": {"app_id": "app_rev1"},
                "created_at": t(T0),
            },
            {
                "id": 2,
                "action": "license.revoke",
                "actor": "key_rev1",
                "target": "lic_rev1_revoked",
                "data": {"reason": "chargeback", "ü": "ünïcode"},
                "created_at": t(T0 + timedelta(minutes=2)),
            },
        ],
    }
    tables = sa.MetaData()
    with store.engine.begin() as conn:
        tables.reflect(conn, only=list(rows))
        for name, table_rows in rows.items():  # insertion order respects foreign keys
            conn.execute(sa.insert(tables.tables[name]), table_rows)
    return Rev1Data(kid=key.kid, rows=rows)


def read_rev1_rows(store: Store, data: Rev1Data) -> dict[str, list[dict[str, Any]]]:
    """The revision-0001 columns of every row, in the same form ``fill_rev1`` wrote them."""
    tables = sa.MetaData()
    found: dict[str, list[dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        tables.reflect(conn, only=list(data.rows))
        for name, written in data.rows.items():
            table = tables.tables[name]
            columns = [table.c[column] for column in written[0]]
            result = conn.execute(sa.select(*columns).order_by(*table.primary_key.columns))
            found[name] = [dict(row._mapping) for row in result]
    return found


def normalized(rows: dict[str, list[dict[str, Any]]]) -> str:
    def one(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()
        if isinstance(value, bytes | memoryview):
            return base64.b64encode(bytes(value)).decode()
        return value

    ordered = {
        name: sorted(({k: one(v) for k, v in row.items()} for row in table), key=json.dumps)
        for name, table in rows.items()
    }
    return json.dumps(ordered, sort_keys=True, default=str)


def check_through_repositories(store: Store, data: Rev1Data) -> None:
    """Today's repositories read revision 0001's rows unchanged."""
    app = store.apps.get("app_rev1")
    assert app is not None
    assert (app.name, app.slug, app.description, app.tier) == (
        "Rev 1 App",
        "rev-1-app",
        "made at revision 0001",
        "pro",
    )
    assert (app.created_at, app.updated_at) == (T0, T0 + timedelta(seconds=1))

    lic = store.licenses.get("lic_rev1")
    assert lic is not None
    assert (lic.key, lic.plan, lic.status, lic.issued_to, lic.issued_email) == (
        "LC-REV1AA-REV1BB-REV1CC",
        "pro",
        "ACTIVE",
        "Ada Lovelace",
        "ada@example.com",
    )
    assert (lic.expires_at, lic.features, lic.metadata) == (
        FAR,
        ("export", "sync"),
        {"seats": 3, "nested": {"ok": True}},
    )
    assert (lic.max_devices, lic.require_hwuid, lic.created_at) == (2, False, T0)
    assert [(d.hwuid, d.bound_at, d.last_seen_at) for d in lic.devices] == [
        ("machine-1", T0, T0 + timedelta(hours=1))
    ]
    found = store.licenses.find_for_verification("LC-REV1AA-REV1BB-REV1CC")
    assert found is not None and found[0].id == "lic_rev1" and found[1].id == "app_rev1"
    revoked = store.licenses.get_by_key("LC-REV1DD-REV1EE-REV1FF")
    assert revoked is not None
    assert (revoked.status, revoked.expires_at, revoked.require_hwuid) == ("REVOKED", None, True)

    key = store.api_keys.authenticate(API_KEY)
    assert key is not None and key.id == "key_rev1" and key.scopes == ("*",)
    assert store.api_keys.authenticate(REVOKED_API_KEY) is None
    gone = store.api_keys.get("key_rev1_revoked")
    assert gone is not None and gone.revoked_at == T0 + timedelta(days=2)
    assert gone.environment == "test" and gone.scopes == ("licenses:read", "audit:read")

    active = store.signing_keys.active()
    assert active is not None and active.kid == data.kid
    assert active.sealed_private_key == data.rows["lc_signing_keys"][0]["sealed_private_key"]
    assert active.public_jwk == data.rows["lc_signing_keys"][0]["public_jwk"]

    events = {(e.id, e.action, e.actor, e.target, e.created_at) for e in store.audit.list()}
    assert {
        (1, "license.create", "cli", "lic_rev1", T0),
        (2, "license.revoke", "key_rev1", "lic_rev1_revoked", T0 + timedelta(minutes=2)),
    } <= events
    assert {e.id: e.data for e in store.audit.list()}[2] == {
        "reason": "chargeback",
        "ü": "ünïcode",
    }


def check_server_runs_on_it(tmp_path: Path, url: str, data: Rev1Data) -> None:
    """A server starts on the migrated store, signs with revision 0001's key, and takes its
    API key; new rows go in beside the old ones."""
    issuer = make_issuer(tmp_path, url, encryption_key=TEST_ENCRYPTION_KEY)
    try:
        verified = issuer.verify(key="LC-REV1AA-REV1BB-REV1CC", hwuid="machine-1")
        body = verified.get_json()
        assert body["valid"] is True, body
        assert body["features"] == ["export", "sync"]
        assert body["hwBound"] is True
        header = json.loads(base64.urlsafe_b64decode(body["license_token"].split(".")[0] + "=="))
        assert header["kid"] == data.kid
        refused = issuer.verify(key="LC-REV1DD-REV1EE-REV1FF", hwuid="x")
        assert refused.get_json()["reason"] == "license_revoked"
        listed = issuer.client.get("/v1/licenses/lic_rev1", headers=issuer.auth(API_KEY))
        assert listed.status_code == 200 and listed.get_json()["email"] == "ada@example.com"
        created = issuer.post(
            "/v1/apps/app_rev1/licenses", {"plan": "new"}, headers=issuer.auth(API_KEY)
        )
        assert created.status_code == 201, created.get_json()
    finally:
        close_issuer(issuer)


# -- the shipped revisions ------------------------------------------------------------------


def test_history_is_one_line_from_revision_1() -> None:
    scripts = migrate._script_directory()
    assert len(scripts.get_heads()) == 1
    chain = list(reversed([s.revision for s in scripts.walk_revisions()]))
    assert chain[0] == REV1
    assert chain[-1] == migrate.head_revision()
    # Ids are four digits, with a letter for a branch's revision (0011b) until the merge
    # re-chains it; the history grows in id order.
    assert all(re.fullmatch(r"\d{4}[a-z]?", revision) for revision in chain)
    assert chain == sorted(chain)
    for script in scripts.walk_revisions():
        assert script.module.__doc__, f"revision {script.revision} needs a docstring"
        assert Path(script.path).name.startswith(f"r{script.revision}_")


def test_migrated_schema_is_the_declared_schema(store: Store) -> None:
    """What the migrations build is exactly ``store/schema.py`` (tables, columns, types,
    nullability, indexes, unique constraints, foreign keys)."""
    status = store.upgrade_schema()
    assert status.state == "current" and status.revision == migrate.head_revision()
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "version_table": migrate.VERSION_TABLE,
                "include_name": lambda name, type_, _parents: (
                    type_ != "table" or migrate.owns_table(name or "")
                ),
            },
        )
        differences = compare_metadata(context, metadata)
    assert differences == []
    assert lc_tables(store) == {t.name for t in metadata.sorted_tables} | {"lc_schema_version"}


def test_upgrade_from_revision_1_keeps_every_row(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    before, after = migrate.upgrade(store.database, REV1)
    assert (before.state, after.revision) == ("empty", REV1)
    data = fill_rev1(store)
    written = normalized(read_rev1_rows(store, data))

    before, after = migrate.upgrade(store.database)
    assert (before.revision, after.state) == (REV1, "current")
    assert normalized(read_rev1_rows(store, data)) == written
    check_through_repositories(store, data)  # (this records the API key's use)
    written = normalized(read_rev1_rows(store, data))

    # Down to revision 0001 and back: its rows come through both ways.
    before, after = migrate.downgrade(store.database, REV1)
    assert after.revision == REV1
    assert normalized(read_rev1_rows(store, data)) == written
    assert migrate.upgrade(store.database)[1].state == "current"
    check_through_repositories(store, data)
    check_server_runs_on_it(tmp_path, store_url, data)


def test_upgrade_is_idempotent_and_downgrade_to_base_empties(store: Store) -> None:
    assert store.upgrade_schema().state == "current"
    assert store.upgrade_schema().state == "current"
    assert version_rows(store) == [migrate.head_revision()]
    before, after = migrate.downgrade(store.database, "base")
    assert (before.state, after.state) == ("current", "empty")
    assert lc_tables(store) == {"lc_schema_version"}
    assert store.prepare_schema().state == "current"  # an empty store is created at start


def test_unknown_revision_names_the_known_ones(store: Store) -> None:
    store.upgrade_schema()
    with pytest.raises(ValueError, match=r"unknown schema revision 'nope'.*0001"):
        migrate.upgrade(store.database, "nope")
    with pytest.raises(ValueError, match="unknown schema revision"):
        migrate.downgrade(store.database, "9999")


def test_targets_in_the_wrong_direction_never_move_the_store(
    store: Store, code_with_revision_2: None
) -> None:
    """Alembic treats ``upgrade`` to an older revision as done (no change) and refuses
    ``downgrade`` to a newer one (a clear ``ValueError``); neither migrates the wrong way."""
    store.upgrade_schema()
    assert migrate.upgrade(store.database, REV1)[1].revision == PROBE
    migrate.downgrade(store.database, REV1)
    with pytest.raises(ValueError, match=rf"cannot migrate to '{PROBE}'.*not a valid downgrade"):
        migrate.downgrade(store.database, PROBE)
    assert version_rows(store) == [REV1]


def test_legacy_store_is_adopted(store: Store) -> None:
    """A store made by ``create_all()`` before migrations existed: revision 0001's tables,
    no version row. At start it is adopted while 0001 is the head (see the refusal test for
    later heads); ``db upgrade`` adopts and migrates it in any case."""
    migrate.upgrade(store.database, REV1)
    data = fill_rev1(store)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE lc_schema_version"))
    assert migrate.status(store.database).state == "legacy"
    if migrate.head_revision() == REV1:
        assert store.prepare_schema().state == "current"
    assert migrate.upgrade(store.database)[1].state == "current"
    assert version_rows(store) == [migrate.head_revision()]
    check_through_repositories(store, data)


def test_partial_store_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE lc_apps (id VARCHAR(40) PRIMARY KEY)"))
    with pytest.raises(RuntimeError, match="some LicenseChain tables but no schema version"):
        store.prepare_schema()


def test_host_app_tables_and_alembic_history_are_left_alone(store: Store) -> None:
    """The host app's own tables and its own ``alembic_version`` share the database."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('hostapp42')"))
        conn.execute(sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY)"))
    assert store.prepare_schema().state == "current"
    migrate.downgrade(store.database, "base")
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            "hostapp42"
        )
    assert {"users", "alembic_version"} <= set(sa.inspect(store.engine).get_table_names())


# -- a store older or newer than the code (a test-only revision after the head) ------------

#: The test-only revision, as a later release would add it after the package's head.
PROBE = "0999"
REVISION_2 = f'''
"""Test only: a column on lc_licenses (a table that lc_devices refers to), rebuilt.

Revision ID: {PROBE}
Revises: {migrate.head_revision()}
"""
import sqlalchemy as sa
from alembic import op

revision = "{PROBE}"
down_revision = "{migrate.head_revision()}"
branch_labels = None
depends_on = None


def rebuild():
    # SQLite: copy the table, as for changes it cannot make in place; others alter it.
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade():
    with op.batch_alter_table("lc_licenses", recreate=rebuild()) as batch:
        batch.add_column(sa.Column("probe", sa.Integer, nullable=False, server_default="7"))


def downgrade():
    with op.batch_alter_table("lc_licenses", recreate=rebuild()) as batch:
        batch.drop_column("probe")
'''


@pytest.fixture
def code_with_revision_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The package's migrations plus a revision after their head, as a later release would
    ship them."""
    copy = tmp_path / "future_migrations"
    shutil.copytree(PACKAGE_MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / f"r{PROBE}_probe.py").write_text(textwrap.dedent(REVISION_2))
    monkeypatch.setattr(migrate, "_SCRIPT_LOCATION", copy)
    yield


def cli(app_factory: Any, *args: str) -> Result:
    """``flask licensechain ...`` as the ``flask`` command runs it: the app is loaded by the
    command (and may refuse to start)."""
    return CliRunner().invoke(licensechain_cli, list(args), obj=ScriptInfo(create_app=app_factory))


def app_factory(tmp_path: Path, url: str) -> Any:
    def create() -> Flask:
        app = Flask("migrations_cli", instance_path=str(tmp_path / "instance"))
        app.testing = True
        LicenseChain(app, database_url=url, encryption_key=TEST_ENCRYPTION_KEY)
        return app

    return create


def json_of(result: Result, exit_code: int = 0) -> dict[str, Any]:
    assert result.exit_code == exit_code, (result.output, result.exception)
    data: dict[str, Any] = json.loads(result.stdout)  # exactly one JSON object
    return data


def test_server_refuses_an_older_store_until_db_upgrade(
    store: Store, store_url: str, tmp_path: Path, code_with_revision_2: None
) -> None:
    migrate.upgrade(store.database, REV1)
    data = fill_rev1(store)
    with pytest.raises(SchemaVersionError) as refused:
        make_issuer(tmp_path, store_url, encryption_key=TEST_ENCRYPTION_KEY)
    assert "flask --app APP licensechain db upgrade" in str(refused.value)
    assert (refused.value.status.state, refused.value.status.revision) == ("older", REV1)
    refused.value.database.engine.dispose()
    # Refused, not half-migrated: nothing changed.
    assert version_rows(store) == [REV1]
    assert "probe" not in {c["name"] for c in sa.inspect(store.engine).get_columns("lc_licenses")}

    factory = app_factory(tmp_path, store_url)
    assert json_of(cli(factory, "db", "current", "--json")) == {
        "state": "older",
        "revision": REV1,
        "head": PROBE,
    }
    assert json_of(cli(factory, "db", "upgrade", "--json")) == {
        "from": REV1,
        "state": "current",
        "revision": PROBE,
        "head": PROBE,
    }
    check_through_repositories(store, data)  # the rebuilt lc_licenses kept its devices
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT probe FROM lc_licenses")).scalars().all() == [7, 7]
    assert json_of(cli(factory, "db", "downgrade", REV1, "--json"))["revision"] == REV1
    assert version_rows(store) == [REV1]  # today's code reads only its own head's schema
    assert json_of(cli(factory, "db", "upgrade", "--json"))["revision"] == PROBE
    check_through_repositories(store, data)  # down and up again, nothing lost
    check_server_runs_on_it(tmp_path, store_url, data)


def test_server_refuses_a_newer_store(
    store: Store, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    future = tmp_path / "future_migrations"
    shutil.copytree(PACKAGE_MIGRATIONS, future, ignore=shutil.ignore_patterns("__pycache__"))
    (future / "versions" / f"r{PROBE}_probe.py").write_text(textwrap.dedent(REVISION_2))
    with monkeypatch.context() as newer_code:
        newer_code.setattr(migrate, "_SCRIPT_LOCATION", future)
        migrate.upgrade(store.database)
    assert version_rows(store) == [PROBE]

    with pytest.raises(SchemaVersionError, match="does not know") as refused:
        make_issuer(tmp_path, store_url, encryption_key=TEST_ENCRYPTION_KEY)
    assert refused.value.status.state == "newer"
    refused.value.database.engine.dispose()

    factory = app_factory(tmp_path, store_url)
    head = migrate.head_revision()
    assert json_of(cli(factory, "db", "current", "--json")) == {
        "state": "newer",
        "revision": PROBE,
        "head": head,
    }
    for command in (["upgrade"], ["downgrade", REV1]):
        error = json_of(cli(factory, "db", *command, "--json"), exit_code=1)
        assert error["error"] == "schema_newer", error
        assert PROBE in error["message"] and "does not know" in error["message"]
    assert version_rows(store) == [PROBE]


# -- the command line -----------------------------------------------------------------------


def test_cli_reports_and_errors(store: Store, store_url: str, tmp_path: Path) -> None:
    factory = app_factory(tmp_path, store_url)
    head = migrate.head_revision()
    current = {"state": "current", "revision": head, "head": head}
    assert json_of(cli(factory, "db", "current", "--json")) == current  # start created it
    human = cli(factory, "db", "current")
    assert human.exit_code == 0 and f"revision {head}" in human.stdout

    error = json_of(cli(factory, "db", "downgrade", "nope", "--json"), exit_code=1)
    assert error == {
        "error": "invalid_request",
        "message": f"unknown schema revision 'nope': known revisions are {_known()}",
    }
    plain = cli(factory, "db", "upgrade", "nope")
    assert plain.exit_code == 1 and plain.stdout == ""
    assert "unknown schema revision 'nope'" in plain.stderr and "Traceback" not in plain.output

    assert json_of(cli(factory, "db", "downgrade", "base", "--json"))["state"] == "empty"
    assert lc_tables(store) == {"lc_schema_version"}
    assert json_of(cli(factory, "init", "--json"))["store"] == store.backend  # init migrates
    assert version_rows(store) == [head]


def _known() -> str:
    revisions = [s.revision for s in migrate._script_directory().walk_revisions()]
    return ", ".join(reversed(revisions)) + " (or head, base)"


def test_cli_on_an_integrator_app_is_a_json_error(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))

    def create() -> Flask:
        app = Flask("integrator")
        app.testing = True
        LicenseChain(app, jwks_file=str(jwks), audience="app_x", issuer="https://i.test")
        return app

    error = json_of(cli(create, "db", "current", "--json"), exit_code=1)
    assert error["error"] == "not_an_issuer"


def test_the_wheel_ships_every_migration_file() -> None:
    """Each file of the script directory is in a package (``.py``) or in the package data
    of ``pyproject.toml`` (checked by building the wheel once by hand: all there)."""
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["flask_licensechain"]
    package = root / "flask_licensechain"
    for path in PACKAGE_MIGRATIONS.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(package).as_posix()
        in_package = path.suffix == ".py" and (path.parent / "__init__.py").exists()
        assert in_package or any(fnmatch.fnmatch(relative, p) for p in patterns), relative
