"""``flask licensechain backup FILE`` / ``restore FILE`` on SQLite and PostgreSQL: a backup
taken while another process writes restores into an empty store where licenses verify and
tokens issued before still pass; damaged files, newer schemas and edited headers are refused
before the target is touched; an older schema is migrated."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain.core.sealing import Sealer, new_encryption_key_text, parse_encryption_key
from flask_licensechain.store import migrate, open_store
from flask_licensechain.store.backup import (
    BackupCorrupt,
    BackupTooNew,
    backup,
    choose_method,
    open_backup,
    read_header,
    seal_backup,
)

K1 = new_encryption_key_text()
KEYS = f"k1:{K1}"


@pytest.fixture
def postgres_pair(postgres_server_url: str) -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases (source, target), dropped afterwards."""
    admin = sa.create_engine(
        postgres_server_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    names = ["lc_bk_" + secrets.token_hex(6) for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = postgres_server_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "postgres":
        pair: tuple[str, str] = request.getfixturevalue("postgres_pair")
        return pair
    return f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}"


def start(tmp_path: Path, url: str, name: str) -> Issuer:
    return make_issuer(tmp_path / name, url, encryption_keys=KEYS, encryption_key=None)


def start_empty(tmp_path: Path, url: str, name: str) -> Issuer:
    """An issuer on a store as its first start leaves it (signing key, schema version): the
    harness's admin key removed, since an API key puts a store in use and ``restore``
    refuses it without ``--replace`` (tests/test_backup_restore_safety.py)."""
    issuer = start(tmp_path, url, name)
    with issuer.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM lc_api_keys"))
    return issuer


def cli(issuer: Issuer, *args: str) -> Any:
    return issuer.app.test_cli_runner().invoke(args=["licensechain", *args, "--json"])


def cli_json(issuer: Issuer, *args: str) -> dict[str, Any]:
    result = cli(issuer, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


WRITER = """
import sys, time
from flask_licensechain.store import open_store

store = open_store(sys.argv[1])
made = 0
while True:
    store.licenses.create(sys.argv[2], plan="bulk", issued_email=f"w{made}@example.test")
    made += 1
    print(made, flush=True)
"""


@pytest.mark.slow
def test_round_trip_while_another_process_writes(tmp_path: Path, urls: tuple[str, str]) -> None:
    source_url, target_url = urls
    source = start(tmp_path, source_url, "source")
    app = source.new_app()
    lic = source.new_license(app.id, plan="pro", issued_email="ann@example.test", max_devices=2)
    token = source.token_for(lic.key, hwuid="machine-1")
    source.store.audit.record("test.before_backup", actor="tests", target=lic.id)

    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    writer = subprocess.Popen(
        [sys.executable, str(script), source_url, app.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        deadline = time.monotonic() + 30
        while int(writer.stdout.readline() or 0) < 20:  # the writer is under way
            assert time.monotonic() < deadline and writer.poll() is None, writer.stderr
        file = tmp_path / "store.lcbackup"
        made = cli_json(source, "backup", str(file))
        assert writer.poll() is None  # it wrote all along
    finally:
        writer.kill()
        writer.wait()
    expected = "sqlite-backup" if source_url.startswith("sqlite") else "pg_dump"
    assert made["method"] == expected and made["revision"] == migrate.head_revision()
    assert made["key_id"] == "k1" and len(made["sha256"]) == 64
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert lic.key.encode() not in file.read_bytes()  # encrypted
    assert b"ann@example.test" not in file.read_bytes()
    close_issuer(source)

    target = start_empty(tmp_path, target_url, "target")
    restored = cli_json(target, "restore", str(file))
    assert restored["method"] == expected and restored["migratedFrom"] is None
    close_issuer(target)

    after = start(tmp_path, target_url, "after")
    assert after.introspect(token)["active"] is True  # a token issued before the backup
    licenses = after.store.licenses.list(app_id=app.id, limit=100)[0]
    assert len(licenses) >= 21  # the first license and at least twenty of the writer's
    for each in licenses[:25]:
        answer = after.verify(key=each.key).get_json()
        assert answer["valid"] is True, answer
    assert after.verify(key=lic.key, hwuid="machine-1").get_json()["hwBound"] is True
    assert after.store.licenses.get(lic.id).issued_email == "ann@example.test"
    verified = after.store.audit.verify()  # the restored audit chain is intact
    assert verified.ok and verified.count >= 1, verified
    close_issuer(after)


@pytest.mark.postgres
def test_logical_export_when_pg_dump_is_missing(
    tmp_path: Path, postgres_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_url, target_url = postgres_pair
    source = start(tmp_path, source_url, "source")
    lic = source.new_license(plan="pro", features=["export"], metadata={"seat": 3})
    token = source.token_for(lic.key, hwuid="m-1")
    source.store.audit.record("test.event", actor="t", target=lic.id, data={"n": 1})
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert choose_method(source.store.database) == "logical"
    file = tmp_path / "logical.lcbackup"
    made = cli_json(source, "backup", str(file))
    assert made["method"] == "logical"
    result = cli(source, "backup", str(tmp_path / "other"), "--method", "native")
    assert result.exit_code == 1 and "pg_dump" in json.loads(result.stdout)["message"]
    close_issuer(source)

    target = start_empty(tmp_path, target_url, "target")
    assert cli_json(target, "restore", str(file))["method"] == "logical"
    close_issuer(target)
    after = start(tmp_path, target_url, "after")
    assert after.introspect(token)["active"] is True
    again = after.store.licenses.get(lic.id)
    assert again.features == ("export",) or list(again.features) == ["export"]
    assert again.metadata == {"seat": 3}
    assert [d.hwuid for d in again.devices] == ["m-1"]
    after.store.audit.record("after.restore", actor="t")  # the id sequence moved on
    assert after.store.audit.list()[0].action == "after.restore"
    close_issuer(after)


def _made_backup(tmp_path: Path) -> tuple[Issuer, Path]:
    source = start(tmp_path, f"sqlite:///{tmp_path / 'src.db'}", "source")
    source.new_license()
    file = tmp_path / "good.lcbackup"
    cli_json(source, "backup", str(file))
    close_issuer(source)
    return start_empty(tmp_path, f"sqlite:///{tmp_path / 'dst.db'}", "target"), file


def test_a_damaged_file_is_refused_and_the_target_untouched(tmp_path: Path) -> None:
    target, file = _made_backup(tmp_path)
    before = target.snapshot()
    data = bytearray(file.read_bytes())
    data[-10] ^= 0x01
    damaged = tmp_path / "damaged.lcbackup"
    damaged.write_bytes(bytes(data))
    result = cli(target, "restore", str(damaged))
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert error["error"] == "backup_corrupt" and "checksum" in error["message"]
    truncated = tmp_path / "truncated.lcbackup"
    truncated.write_bytes(file.read_bytes()[:-100])
    assert json.loads(cli(target, "restore", str(truncated)).stdout)["error"] == "backup_corrupt"
    other = tmp_path / "other.lcbackup"
    other.write_bytes(b"SQLite format 3\x00")
    assert json.loads(cli(target, "restore", str(other)).stdout)["error"] == "backup_corrupt"
    assert target.snapshot() == before
    close_issuer(target)


def test_an_edited_header_does_not_decrypt(tmp_path: Path) -> None:
    """Claiming another revision (checksum recomputed) breaks the authentication."""
    target, file = _made_backup(tmp_path)
    sealer = Sealer([("k1", parse_encryption_key(K1))])
    info, blob = read_header(file.read_bytes())
    fields = info.as_dict()
    fields["revision"] = "0001"
    header = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    edited = b"LCBACKUP1\n" + header + b"\n" + blob
    with pytest.raises(BackupCorrupt, match="does not decrypt"):
        open_backup(sealer, edited)
    close_issuer(target)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    target, _ = _made_backup(tmp_path)
    sealer = target.state.sealer
    _, data = seal_backup(
        sealer, b"anything", backend="sqlite", method="sqlite-backup", revision="9999"
    )
    file = tmp_path / "newer.lcbackup"
    file.write_bytes(data)
    before = target.snapshot()
    result = cli(target, "restore", str(file))
    error = json.loads(result.stdout)
    assert error["error"] == "backup_too_new" and "9999" in error["message"]
    with pytest.raises(BackupTooNew):
        open_backup(sealer, data)
    assert target.snapshot() == before
    close_issuer(target)


def test_a_key_we_do_not_have_is_named(tmp_path: Path) -> None:
    target, file = _made_backup(tmp_path)
    other = make_issuer(
        tmp_path / "o",
        f"sqlite:///{tmp_path / 'o.db'}",
        encryption_keys=f"k9:{new_encryption_key_text()}",
        encryption_key=None,
    )
    error = json.loads(cli(other, "restore", str(file)).stdout)
    assert error["error"] == "backup_failed" and "'k1'" in error["message"]
    close_issuer(other)
    close_issuer(target)


def test_a_store_with_data_is_not_replaced_unasked(tmp_path: Path) -> None:
    target, file = _made_backup(tmp_path)
    target.new_license()
    error = json.loads(cli(target, "restore", str(file)).stdout)
    assert error["error"] == "invalid_request" and "--replace" in error["message"]
    assert cli_json(target, "restore", str(file), "--replace")["method"] == "sqlite-backup"
    close_issuer(target)


def test_an_older_schema_is_migrated(tmp_path: Path) -> None:
    """A backup of a store at revision 0002 restores and is migrated to head."""
    old_url = f"sqlite:///{tmp_path / 'old.db'}"
    old = open_store(old_url)
    migrate.upgrade(old.database, "0002")
    now = "2026-01-01 00:00:00.000000"
    with old.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO lc_apps (id, name, slug, tier, created_at, updated_at) "
            f"VALUES ('app_old', 'Old', 'old', 'pro', '{now}', '{now}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO lc_licenses (id, app_id, key, status, features, meta, max_devices, "
            "require_hwuid, created_at, updated_at) VALUES ('lic_old', 'app_old', "
            f"'LC-AAAAAA-BBBBBB-CCCCCC', 'ACTIVE', '[]', '{{}}', 1, 0, '{now}', '{now}')"
        )
    sealer = Sealer([("k1", parse_encryption_key(K1))])
    file = tmp_path / "old.lcbackup"
    info = backup(old.database, sealer, file)
    old.dispose()
    assert info.revision == "0002"

    target = start_empty(tmp_path, f"sqlite:///{tmp_path / 'new.db'}", "target")
    restored = cli_json(target, "restore", str(file))
    assert restored["backupRevision"] == "0002" and restored["migratedFrom"] == "0002"
    assert restored["revision"] == migrate.head_revision()
    close_issuer(target)
    after = start(tmp_path, f"sqlite:///{tmp_path / 'new.db'}", "after")
    answer = after.verify(key="LC-AAAAAA-BBBBBB-CCCCCC").get_json()
    assert answer["valid"] is True, answer
    close_issuer(after)


def test_backup_refuses_a_missing_folder_cleanly(tmp_path: Path) -> None:
    target, _ = _made_backup(tmp_path)
    result = cli(target, "backup", str(tmp_path / "missing" / "x.lcbackup"))
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["error"]
    close_issuer(target)
    assert os.listdir(tmp_path).count("missing") == 0
