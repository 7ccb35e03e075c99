"""Fixtures of the store tests (a pytest plugin: ``pytest_plugins = ["store_fixtures"]``):
a migrated store on SQLite (a file in tmp_path) and on PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_licensechain.store import AuditKeys, Store, open_store
from flask_licensechain.store.schema import metadata as schema_metadata

#: the audit chain's key in the store tests (an issuer derives it from its encryption key)
TEST_AUDIT_KEYS = AuditKeys.derive([("test", bytes(range(32)))])
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """One PostgreSQL database per test module (emptied after each test): creating a
    database per test would cost more than the tests themselves."""
    name = "lc_store_" + secrets.token_hex(6)
    admin = sa.create_engine(
        postgres_server_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("module_postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    opened.audit.use_keys(TEST_AUDIT_KEYS)
    opened.upgrade_schema()
    try:
        yield opened
    finally:
        if opened.backend == "postgresql":
            tables = ", ".join(table.name for table in schema_metadata.sorted_tables)
            with opened.engine.begin() as conn:
                conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        opened.dispose()
