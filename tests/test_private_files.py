"""Files the package creates hold license keys, customer e-mails and key material: 0600 files,
0700 folders, whatever the umask (the usual 022 here). SQLite's -wal and -shm files included."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from issuer_support import close_issuer, make_issuer

from flask_licensechain.core.private_files import create_private_file, make_private_dirs
from flask_licensechain.issuer import read_or_create_key_file
from flask_licensechain.store import open_store


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_embedded_default_store_is_private(tmp_path: Path) -> None:
    """No configuration: the instance folder, the database, its WAL files, the key file."""
    issuer = make_issuer(tmp_path)  # creates tmp_path / "instance"
    try:
        issuer.new_license(issued_email="buyer@example.com")  # a write: -wal and -shm exist
        instance = tmp_path / "instance"
        created = {p.name: mode(p) for p in instance.iterdir()}
        assert {"licensechain.db", "licensechain.db-wal", "licensechain.db-shm"} <= set(created)
        assert created == dict.fromkeys(created, 0o600), created
        assert mode(instance) == 0o700
    finally:
        close_issuer(issuer)


def test_configured_sqlite_file(tmp_path: Path) -> None:
    """A configured path in an existing folder: the folder keeps its mode, the files are 0600."""
    tmp_path.chmod(0o755)
    db = tmp_path / "store.db"
    store = open_store(f"sqlite:///{db}")
    try:
        store.upgrade_schema()
        store.apps.create("A")
        for path in (db, db.with_name("store.db-wal"), db.with_name("store.db-shm")):
            assert mode(path) == 0o600, path
        assert mode(tmp_path) == 0o755
    finally:
        store.dispose()


def test_key_file_folder_is_private(tmp_path: Path) -> None:
    """Every folder made on the way to the key file is 0700."""
    deep = tmp_path / "var" / "lib" / "licensechain"
    read_or_create_key_file(deep / "licensechain.key")
    assert mode(tmp_path / "var") == mode(tmp_path / "var" / "lib") == mode(deep) == 0o700
    assert mode(deep / "licensechain.key") == 0o600


def test_rollback_journal_follows_the_database_mode(tmp_path: Path) -> None:
    """A store file later used with a rollback journal: SQLite's -journal is private too."""
    db = tmp_path / "j.db"
    open_store(f"sqlite:///{db}").dispose()
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = PERSIST")  # the journal stays after commit
        conn.execute("CREATE TABLE t (x)")
    journal = db.with_name("j.db-journal")
    assert journal.exists()
    assert mode(journal) == 0o600


def test_existing_shared_database_is_kept_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="licensechain.files"):
        store = open_store(f"sqlite:///{db}")
    store.dispose()
    assert mode(db) == 0o644  # an operator's file: not changed behind their back
    assert any(str(db) in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)


def test_in_memory_store_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite://")
    store.upgrade_schema()
    store.dispose()
    assert list(tmp_path.iterdir()) == []


def test_helpers_under_a_permissive_umask(tmp_path: Path) -> None:
    os.umask(0)
    target = tmp_path / "a" / "b" / "secret"
    with pytest.raises(FileNotFoundError):
        create_private_file(target)  # folders are made on purpose, not on the way
    make_private_dirs(target.parent)
    assert create_private_file(target) is True
    assert create_private_file(target) is False  # racing workers: the second one finds it
    assert mode(target) == 0o600
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    make_private_dirs(tmp_path / "a")  # existing: fine, unchanged
    assert mode(tmp_path / "a") == 0o700


def test_quickstart_demo_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/quickstart.py remembers the demo license key in its instance folder."""
    spec = importlib.util.spec_from_file_location(
        "quickstart_example", Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"
    )
    assert spec is not None and spec.loader is not None
    quickstart = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, quickstart)  # its dataclasses look it up
    spec.loader.exec_module(quickstart)
    instance = tmp_path / "qs"
    monkeypatch.setenv("QUICKSTART_INSTANCE_PATH", str(instance))
    app = quickstart.create_app()
    app.testing = True
    try:
        quickstart.ensure_demo(app)
        files = {p.name: mode(p) for p in instance.iterdir()}
        assert quickstart.DEMO_FILE in files
        assert files == dict.fromkeys(files, 0o600), files
        assert mode(instance) == 0o700
    finally:
        app.extensions["licensechain"].store.dispose()
