"""The keyring of encryption keys (``core/sealing.py``), the refusal of a store sealed under
a key we do not have, and ``flask licensechain rotate-encryption-key``, on SQLite and
PostgreSQL; a rotation killed midway (SIGKILL, a real process) leaves every secret readable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain import LicenseChain
from flask_licensechain.core.errors import ConfigError, KeyMaterialError
from flask_licensechain.core.keys import SigningKey, unseal_private_key
from flask_licensechain.core.sealing import (
    LEGACY_KEY_ID,
    Sealer,
    UnknownSealingKey,
    new_encryption_key_text,
    parse_encryption_key,
    parse_key_list,
    sealed_key_id,
)
from flask_licensechain.store import open_store
from flask_licensechain.store.schema import signing_keys
from flask_licensechain.store.sealed import key_ids_in_use

K1 = new_encryption_key_text()
K2 = new_encryption_key_text()
K3 = new_encryption_key_text()


def ring(*entries: tuple[str, str]) -> Sealer:
    return Sealer([(key_id, parse_encryption_key(text)) for key_id, text in entries])


# -- the Sealer --------------------------------------------------------------------------


def test_seal_names_the_first_key_and_any_key_of_the_ring_unseals() -> None:
    old = ring(("k1", K1))
    sealed = old.seal(b"secret", context=b"ctx")
    assert sealed.startswith("lcs1.k1.") and b"secret" not in sealed.encode()
    assert sealed_key_id(sealed) == "k1"
    both = ring(("k2", K2), ("k1", K1))
    assert both.unseal(sealed, context=b"ctx") == b"secret"
    assert both.needs_reseal(sealed) and not both.needs_reseal(both.seal(b"x", context=b"c"))
    assert sealed_key_id(both.seal(b"x", context=b"c")) == "k2"
    assert both.unseal(sealed.encode("ascii"), context=b"ctx") == b"secret"  # binary columns


def test_a_value_moved_altered_or_relabelled_does_not_unseal() -> None:
    sealer = ring(("k1", K1), ("k2", K2))
    sealed = sealer.seal(b"secret", context=b"row-1")
    with pytest.raises(KeyMaterialError):
        sealer.unseal(sealed, context=b"row-2")  # copied onto another row
    prefix, key_id, body = sealed.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(KeyMaterialError):
        sealer.unseal(f"{prefix}.{key_id}.{flipped}", context=b"row-1")
    with pytest.raises(KeyMaterialError):
        sealer.unseal(f"{prefix}.k2.{body}", context=b"row-1")  # claims another key
    with pytest.raises(KeyMaterialError):
        sealer.unseal("lcs1.k1.AAAA", context=b"row-1")  # truncated
    with pytest.raises(KeyMaterialError):
        sealer.unseal("plaintext", context=b"row-1")
    same_id_other_key = ring(("k1", K3))
    with pytest.raises(KeyMaterialError, match="ENCRYPTION_KEY"):
        same_id_other_key.unseal(sealed, context=b"row-1")


def test_an_unknown_key_id_is_named() -> None:
    sealed = ring(("k1", K1)).seal(b"s", context=b"c")
    with pytest.raises(UnknownSealingKey) as caught:
        ring(("k2", K2)).unseal(sealed, context=b"c")
    assert "'k1'" in str(caught.value)


def test_the_pre_keyring_format_is_read_as_key_default() -> None:
    key = parse_encryption_key(K1)
    nonce = os.urandom(12)
    legacy = b"\x01" + nonce + AESGCM(key).encrypt(nonce, b"old secret", b"kid-1")
    assert sealed_key_id(legacy) == LEGACY_KEY_ID
    assert Sealer.single(key).unseal(legacy, context=b"kid-1") == b"old secret"
    assert ring(("k2", K2), (LEGACY_KEY_ID, K1)).needs_reseal(legacy)
    with pytest.raises(KeyMaterialError):
        Sealer.single(key).unseal(legacy, context=b"kid-2")
    with pytest.raises(UnknownSealingKey):
        ring(("k2", K2)).unseal(legacy, context=b"kid-1")


@pytest.mark.parametrize(
    "value",
    [
        f"k2:{K2},k1:{K1}",
        f" k2:{K2}\n k1:{K1} ",
        [f"k2:{K2}", f"k1:{K1}"],
        [("k2", K2), ("k1", K1)],
        {"k2": K2, "k1": K1},
    ],
)
def test_key_list_shapes(value: Any) -> None:
    parsed = parse_key_list(value)
    assert [key_id for key_id, _ in parsed] == ["k2", "k1"]
    assert parsed[0][1] == parse_encryption_key(K2)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "no key"),
        (f"k1:{K1},k1:{K2}", "twice"),
        ("k1:short", "32 bytes"),
        (f"{K1}", "without ':'"),
        (f"bad.id:{K1}", "key id"),
        ([42], "pair"),
    ],
)
def test_bad_key_lists_are_config_errors(value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_key_list(value)


def test_repr_shows_ids_never_keys() -> None:
    sealer = ring(("k2", K2), ("k1", K1))
    assert repr(sealer) == "Sealer(key_ids=['k2', 'k1'])"


# -- the issuer and the store ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'keys.db'}"


def start(tmp_path: Path, url: str, keys: str, name: str = "a") -> Issuer:
    return make_issuer(tmp_path / name, url, encryption_keys=keys, encryption_key=None)


def stored_key_ids(url: str) -> dict[str, list[str]]:
    store = open_store(url)
    try:
        return key_ids_in_use(store.database)
    finally:
        store.dispose()


def test_both_settings_at_once_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        make_issuer(
            tmp_path, f"sqlite:///{tmp_path / 'x.db'}", encryption_key=K1, encryption_keys=f"a:{K2}"
        )


def test_keys_from_app_config_seal_the_signing_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cfg.db'}"
    app = Flask("cfg", instance_path=str(tmp_path / "instance"))
    app.testing = True
    app.config.update(LICENSECHAIN_DATABASE_URL=url, LICENSECHAIN_ENCRYPTION_KEYS=f"main:{K1}")
    LicenseChain(app)
    app.extensions["licensechain"].store.dispose()
    assert stored_key_ids(url) == {"main": ["lc_signing_keys.sealed_private_key"]}
    assert not (tmp_path / "licensechain.key").exists()  # no key file beside the db


def test_a_store_sealed_under_a_missing_key_refuses_to_start(
    tmp_path: Path, store_url: str
) -> None:
    close_issuer(start(tmp_path, store_url, f"k1:{K1}"))
    assert stored_key_ids(store_url) == {"k1": ["lc_signing_keys.sealed_private_key"]}
    with pytest.raises(ConfigError) as refused:
        start(tmp_path, store_url, f"k2:{K2}", "b")
    message = str(refused.value)
    assert "'k1' (lc_signing_keys.sealed_private_key)" in message
    assert "LICENSECHAIN_ENCRYPTION_KEYS" in message
    # with k1 still listed (not first), the issuer starts and signs with the stored key
    issuer = start(tmp_path, store_url, f"k2:{K2},k1:{K1}", "c")
    lic = issuer.new_license()
    assert issuer.token_for(lic.key)
    close_issuer(issuer)


def run_json(issuer: Issuer, *args: str) -> dict[str, Any]:
    result = issuer.app.test_cli_runner().invoke(args=["licensechain", *args, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_rotation_reseals_everything_under_the_first_key(tmp_path: Path, store_url: str) -> None:
    old = start(tmp_path, store_url, f"k1:{K1}")
    lic = old.new_license()
    token = old.token_for(lic.key)
    old.client.post("/v1/signing-keys/rotate", headers=old.auth())  # a retiring key too
    close_issuer(old)

    issuer = start(tmp_path, store_url, f"k2:{K2},k1:{K1}", "b")
    report = run_json(issuer, "rotate-encryption-key")
    assert report == {
        "keyId": "k2",
        # every registered column is reported; the console's TOTP secrets (none here) too
        "resealed": {"lc_signing_keys.sealed_private_key": 2, "lc_console_users.totp_secret": 0},
        "total": 2,
        "removableKeyIds": ["k1"],
    }
    assert stored_key_ids(store_url) == {"k2": ["lc_signing_keys.sealed_private_key"]}
    again = run_json(issuer, "rotate-encryption-key")
    assert again["total"] == 0  # idempotent
    events = issuer.store.audit.list()
    assert events[0].action == "encryption_key.rotate" and events[0].target == "k2"
    close_issuer(issuer)

    # the old key can go: the issuer starts on k2 alone and old tokens still pass
    only_new = start(tmp_path, store_url, f"k2:{K2}", "c")
    assert only_new.introspect(token)["active"] is True
    assert only_new.token_for(lic.key)
    close_issuer(only_new)


def test_rotation_reseals_the_pre_keyring_format(tmp_path: Path) -> None:
    """A store sealed before keyrings (version byte 0x01) starts under the one-key form,
    and rotation moves it to the keyring format."""
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    store = open_store(url)
    store.upgrade_schema()
    key = SigningKey.generate()
    der = key.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(12)
    legacy = (
        b"\x01" + nonce + AESGCM(parse_encryption_key(K1)).encrypt(nonce, der, key.kid.encode())
    )
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(signing_keys).values(
                kid=key.kid,
                public_jwk=key.jwk(),
                sealed_private_key=legacy,
                state="active",
                created_at=datetime.now(UTC),
            )
        )
    store.dispose()

    issuer = make_issuer(tmp_path / "a", url, encryption_key=K1)
    assert issuer.state.keyring.active_key().kid == key.kid
    close_issuer(issuer)
    issuer = start(tmp_path, url, f"k2:{K2},{LEGACY_KEY_ID}:{K1}", "b")
    assert run_json(issuer, "rotate-encryption-key")["total"] == 1
    close_issuer(issuer)
    assert stored_key_ids(url) == {"k2": ["lc_signing_keys.sealed_private_key"]}
    issuer = start(tmp_path, url, f"k2:{K2}", "c")
    assert issuer.state.keyring.active_key().kid == key.kid
    close_issuer(issuer)


# -- a rotation killed midway --------------------------------------------------------------

APP_MODULE = """
import os

from flask import Flask
from flask_licensechain import LicenseChain

app = Flask(__name__, instance_path={instance!r})
app.config["LICENSECHAIN_ISSUER"] = "https://licenses.example.test/v1"
app.config.update({{k: v for k, v in os.environ.items() if k.startswith("LICENSECHAIN_")}})
LicenseChain(app)
"""
MANY = 6000


@pytest.fixture
def flask_app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "rot_app.py").write_text(
        textwrap.dedent(APP_MODULE.format(instance=str(tmp_path / "instance")))
    )
    yield tmp_path


@pytest.mark.slow
def test_a_rotation_killed_midway_leaves_every_secret_readable(
    flask_app_dir: Path, store_url: str
) -> None:
    old = Sealer([("k1", parse_encryption_key(K1))])
    close_issuer(start(flask_app_dir, store_url, f"k1:{K1}"))
    # Many retired keys that kept a sealed blob: enough values that the kill lands midway.
    store = open_store(store_url)
    now = datetime.now(UTC)
    rows = [
        {
            "kid": f"bulk-{i:05d}",
            "public_jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            "sealed_private_key": old.seal(
                f"secret {i}".encode(), context=f"bulk-{i:05d}".encode()
            ).encode(),
            "state": "retired",
            "created_at": now,
            "retired_at": now,
            "expires_at": now,
        }
        for i in range(MANY)
    ]
    store.signing_keys
    with store.database.write() as conn:
        conn.execute(sa.insert(signing_keys), rows)
    store.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LICENSECHAIN_", "FLASK_"))}
    env.update(LICENSECHAIN_DATABASE_URL=store_url, LICENSECHAIN_ENCRYPTION_KEYS=f"k2:{K2},k1:{K1}")
    command = [sys.executable, "-m", "flask", "--app", "rot_app", "licensechain"]
    process = subprocess.Popen(
        [*command, "rotate-encryption-key", "--json"],
        cwd=flask_app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen += line
        if "1000/" in line:  # a thousand values re-sealed, not yet committed
            break
        assert line, f"the rotation ended before it could be killed: {seen}"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    # Every secret still unseals with the keys of the ring, and nothing was half-committed.
    ring_both = Sealer([("k2", parse_encryption_key(K2)), ("k1", parse_encryption_key(K1))])
    store = open_store(store_url)
    with store.database.read() as conn:
        found = conn.execute(sa.select(signing_keys.c.kid, signing_keys.c.sealed_private_key)).all()
    store.dispose()
    ids = {sealed_key_id(blob) for _, blob in found}
    assert ids == {"k1"}, ids  # one transaction: all still under the old key
    for kid, blob in found:
        if kid.startswith("bulk-"):
            expected = f"secret {int(kid[5:])}".encode()
            assert ring_both.unseal(blob, context=kid.encode()) == expected
        else:
            unseal_private_key(blob, kid, ring_both)

    # a second run finishes the job, and the old key can then go
    done = subprocess.run(
        [*command, "rotate-encryption-key", "--json"],
        cwd=flask_app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"] == MANY + 1
    assert stored_key_ids(store_url) == {"k2": ["lc_signing_keys.sealed_private_key"]}


def test_another_module_registers_its_sealed_column(tmp_path: Path, store_url: str) -> None:
    """Webhook and TOTP secrets arrive from other modules: a registered text column is
    checked at start and re-sealed by the rotation, with its own context."""
    from flask_licensechain.store.sealed import SEALED_COLUMNS, register_sealed_column

    extra = sa.Table(
        "lc_test_secrets",
        sa.MetaData(),
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("secret", sa.Text),
    )
    entry = register_sealed_column(extra, "secret", context=lambda row: b"t:" + row.id.encode())
    assert register_sealed_column(extra, "secret", context=lambda row: b"") is entry
    try:
        close_issuer(start(tmp_path, store_url, f"k1:{K1}"))
        old = ring(("k1", K1))
        store = open_store(store_url)
        with store.engine.begin() as conn:
            extra.create(conn)
            conn.execute(
                sa.insert(extra),
                [
                    {"id": "w1", "secret": old.seal(b"whsec-1", context=b"t:w1")},
                    {"id": "w2", "secret": None},
                ],
            )
        store.dispose()
        with pytest.raises(ConfigError, match=r"lc_test_secrets\.secret"):
            start(tmp_path, store_url, f"k2:{K2}", "b")
        issuer = start(tmp_path, store_url, f"k2:{K2},k1:{K1}", "c")
        report = run_json(issuer, "rotate-encryption-key")
        assert report["resealed"]["lc_test_secrets.secret"] == 1
        close_issuer(issuer)
        store = open_store(store_url)
        with store.engine.begin() as conn:
            value = conn.execute(sa.select(extra.c.secret).where(extra.c.id == "w1")).scalar_one()
            extra.drop(conn)
        store.dispose()
        assert isinstance(value, str) and value.startswith("lcs1.k2.")
        assert ring(("k2", K2)).unseal(value, context=b"t:w1") == b"whsec-1"
    finally:
        SEALED_COLUMNS.remove(entry)
