"""Attacks on the backup, restore and encryption-key rotation promises (README "Data
protection", "Backup and restore"). Each test here is a finding: it fails on the code it
was written against (branch attack15)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain.store.backup import backup, restore

ANN = "ann@example.test"


@pytest.fixture(params=["sqlite", "postgres"])
def issuer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Issuer]:
    url = f"sqlite:///{tmp_path / 'attack.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    made = make_issuer(tmp_path, url, webhooks_allow_private=True)
    hook = {"url": "http://127.0.0.1:9/hook"}  # never sent: no worker runs here
    assert made.client.post("/v1/webhooks", json=hook, headers=made.auth()).status_code == 201
    try:
        yield made
    finally:
        close_issuer(made)


@pytest.mark.parametrize("issuer", ["sqlite"], indirect=True)
def test_restore_keeps_the_host_applications_tables(issuer: Issuer, tmp_path: Path) -> None:
    """README: restore "goes into an empty store (``--replace`` drops the store's
    LicenseChain tables first)"; the backup covers "the ``lc_*`` tables". On SQLite the
    restore copies the backup over the whole database file: a host application's own
    tables in that file (created after the backup, or changed since) are lost."""
    issuer.new_license(issuer.new_app().id, issued_email=ANN)
    path = tmp_path / "store.lcbackup"
    backup(issuer.store.database, issuer.state.sealer, path)
    with issuer.store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE host_orders (id INTEGER PRIMARY KEY, item TEXT)"))
        conn.execute(sa.text("INSERT INTO host_orders VALUES (1, 'keep me')"))
    restore(issuer.store.database, issuer.state.sealer, path, replace=True)
    with issuer.store.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        assert "host_orders" in names, names
        rows = conn.execute(sa.text("SELECT item FROM host_orders")).scalars().all()
    assert rows == ["keep me"]


@pytest.mark.parametrize("issuer", ["postgres"], indirect=True)
def test_a_failing_pg_restore_leaves_the_store_as_it_was(
    issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``pg_dump`` backup restored with ``--replace`` on a host whose ``pg_restore`` fails
    (here: an older client that cannot read the dump's format, a common upgrade mishap).
    The restore drops the LicenseChain tables in one transaction and runs ``pg_restore``
    afterwards: the failure leaves a store without tables, the data it held gone. Expected:
    the store unchanged (README: a refused restore touches nothing)."""
    lic = issuer.new_license(issuer.new_app().id, issued_email=ANN)
    path = tmp_path / "store.lcbackup"
    assert backup(issuer.store.database, issuer.state.sealer, path, method="native").method == (
        "pg_dump"
    )
    newer = issuer.new_license(issuer.new_app().id, issued_email="bob@example.test")
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "pg_restore"
    fake.write_text(
        "#!/bin/sh\necho 'pg_restore: error: unsupported version (1.16) in file header' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    with pytest.raises(Exception, match="pg_restore"):
        restore(issuer.store.database, issuer.state.sealer, path, replace=True)
    with issuer.store.engine.connect() as conn:
        assert "lc_licenses" in sa.inspect(conn).get_table_names()
    assert issuer.store.licenses.get(newer.id) is not None
    assert issuer.store.licenses.get(lic.id) is not None


@pytest.mark.parametrize("issuer", ["sqlite", "postgres"], indirect=True)
def test_a_logical_restore_that_fails_midway_leaves_the_store_as_it_was(
    issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``store/backup.py``: a logical backup is restored "all in one transaction". The
    tables are dropped in one transaction, migrated in others and filled in a last one: a
    failure while inserting (simulated: a row that does not decode, as a lost connection
    or a full disk would) leaves an empty store and the replaced data gone."""
    from flask_licensechain.store import backup as backup_module

    lic = issuer.new_license(issuer.new_app().id, issued_email=ANN)
    path = tmp_path / "store.lcbackup"
    backup(issuer.store.database, issuer.state.sealer, path, method="logical")
    real = backup_module._decode

    def failing(value: Any, column: Any) -> Any:
        if column.table.name == "lc_licenses":
            raise OSError("connection lost")
        return real(value, column)

    monkeypatch.setattr(backup_module, "_decode", failing)
    with pytest.raises(OSError):
        restore(issuer.store.database, issuer.state.sealer, path, replace=True)
    assert issuer.store.licenses.get(lic.id) is not None


@pytest.mark.parametrize("issuer", ["sqlite", "postgres"], indirect=True)
def test_restore_without_replace_refuses_a_configured_store(issuer: Issuer, tmp_path: Path) -> None:
    """README: restore "goes into an empty store (``--replace`` drops the store's
    LicenseChain tables first)". A store that holds no app yet but is configured (webhook
    endpoints, API keys; console users alike) counts as empty: restore without
    ``--replace`` silently drops them."""
    path = tmp_path / "old.lcbackup"
    backup(issuer.store.database, issuer.state.sealer, path)
    hook = {"url": "http://127.0.0.1:9/second-hook"}
    assert issuer.client.post("/v1/webhooks", json=hook, headers=issuer.auth()).status_code == 201
    issuer.store.api_keys.create("ci deploy key", ["licenses:write"])
    with contextlib.suppress(Exception):  # a refusal is the expected outcome
        restore(issuer.store.database, issuer.state.sealer, path, replace=False)
    with issuer.store.engine.connect() as conn:
        urls = conn.execute(sa.text("SELECT url FROM lc_webhook_endpoints")).scalars().all()
        names = conn.execute(sa.text("SELECT name FROM lc_api_keys")).scalars().all()
    assert "http://127.0.0.1:9/second-hook" in urls
    assert "ci deploy key" in names


def test_a_secret_rotated_during_the_key_rotation_is_not_reverted(
    tmp_path: Path, postgres_url: str
) -> None:
    """``rotate-encryption-key`` runs while the servers serve (README). It reads every
    sealed value of a column, then writes each one back re-sealed, by primary key, without
    locking the rows it read: a webhook secret rotated by the API in between is overwritten
    with the re-sealed *old* secret (a lost update). The seller was shown the new secret;
    the store signs with the old one, which the receiver no longer accepts."""
    from flask_licensechain.core.sealing import new_encryption_key_text
    from flask_licensechain.store.sealed import reseal_all
    from flask_licensechain.store.webhooks import secret_context
    from flask_licensechain.webhooks.secret import show

    k1, k2 = new_encryption_key_text(), new_encryption_key_text()
    first = make_issuer(
        tmp_path / "a",
        postgres_url,
        encryption_keys=f"k1:{k1}",
        encryption_key=None,
        webhooks_allow_private=True,
    )
    hook = {"url": "http://127.0.0.1:9/hook"}
    endpoint_id = first.client.post("/v1/webhooks", json=hook, headers=first.auth()).get_json()[
        "id"
    ]
    close_issuer(first)
    issuer = make_issuer(
        tmp_path / "b",
        postgres_url,
        encryption_keys=f"k2:{k2},k1:{k1}",
        encryption_key=None,
        webhooks_allow_private=True,
    )
    shown: list[str] = []

    def meanwhile(where: str, done: int, total: int) -> None:
        if where == "lc_webhook_endpoints.sealed_secret" and done == 0 and not shown:
            response = issuer.client.post(
                f"/v1/webhooks/{endpoint_id}/rotate-secret", headers=issuer.auth()
            )
            assert response.status_code == 200, response.get_json()
            shown.append(response.get_json()["secret"])

    try:
        reseal_all(issuer.store.database, issuer.state.sealer, progress=meanwhile)
        assert shown
        with issuer.store.engine.connect() as conn:
            sealed = conn.execute(
                sa.text("SELECT sealed_secret FROM lc_webhook_endpoints WHERE id = :id"),
                {"id": endpoint_id},
            ).scalar_one()
        secret = issuer.state.sealer.unseal(bytes(sealed), context=secret_context(endpoint_id))
        assert show(secret) == shown[0]
    finally:
        close_issuer(issuer)
