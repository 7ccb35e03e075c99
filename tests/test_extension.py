"""``LicenseChain(app)`` and the app-factory form: the embedded default, the sealing key,
several apps in one process, and workers racing on first start (real processes)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from issuer_support import TEST_ENCRYPTION_KEY, close_issuer, make_issuer

from flask_licensechain import LicenseChain, LicenseChainState, get_state
from flask_licensechain.core.errors import ConfigError
from flask_licensechain.core.keys import KeyMaterialError
from flask_licensechain.issuer import (
    DB_FILENAME,
    KEY_FILENAME,
    IssuerConfigurationError,
    read_or_create_key_file,
)

REPO = Path(__file__).resolve().parents[1]


def _state(app: Flask) -> LicenseChainState:
    state: LicenseChainState = app.extensions["licensechain"]
    return state


#: The issuer URL every app here is configured with: outside debug and testing an issuer
#: will not start without one (its ``iss`` must not follow the Host header).
ISSUER = "https://licenses.example.test/v1"


def issuer_flask(name: str, instance_path: str) -> Flask:
    """A Flask app configured with ``LICENSECHAIN_ISSUER``, as production apps are."""
    app = Flask(name, instance_path=instance_path)
    app.config["LICENSECHAIN_ISSUER"] = ISSUER
    return app


def _dispose(app: Flask) -> None:
    state = _state(app)
    assert state.store is not None
    state.store.dispose()


def test_the_one_liner_just_works(tmp_path: Path) -> None:
    app = issuer_flask("one_liner", instance_path=str(tmp_path / "instance"))
    LicenseChain(app)
    try:
        state = _state(app)
        assert get_state(app) is state
        db = tmp_path / "instance" / DB_FILENAME
        key_file = tmp_path / "instance" / KEY_FILENAME
        assert db.exists()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert state.store is not None and state.store.backend == "sqlite"
        with state.store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        client = app.test_client()
        jwks = client.get("/v1/licenses/jwks").get_json()
        assert len(jwks["keys"]) == 1
        assert client.get("/v1/health").status_code == 200
        assert client.post("/v1/licenses/verify", json={"key": "LC-X"}).get_json() == {
            "valid": False,
            "reason": "license_not_found",
        }
    finally:
        _dispose(app)


def test_restart_keeps_the_key_and_its_seal(tmp_path: Path) -> None:
    first = issuer_flask("first", instance_path=str(tmp_path))
    LicenseChain(first)
    kid = _state(first).keyring.active_key().kid  # type: ignore[union-attr]
    sealed = _state(first).store.signing_keys.active().sealed_private_key  # type: ignore[union-attr]
    private_der = (
        _state(first)
        .keyring.active_key()
        .private_key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    _dispose(first)
    assert sealed is not None and private_der not in sealed  # encrypted at rest
    assert private_der[100:164] not in (tmp_path / DB_FILENAME).read_bytes()
    second = issuer_flask("second", instance_path=str(tmp_path))
    LicenseChain(second)
    try:
        assert _state(second).keyring.active_key().kid == kid  # type: ignore[union-attr]
    finally:
        _dispose(second)


def test_wrong_encryption_key_refuses_to_start(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lc.db'}"
    made = make_issuer(tmp_path / "a", db, encryption_key=TEST_ENCRYPTION_KEY)
    close_issuer(made)
    other_key = "ff" * 32
    with pytest.raises(KeyMaterialError, match="ENCRYPTION_KEY"):
        make_issuer(tmp_path / "b", db, encryption_key=other_key)


def test_postgres_without_an_encryption_key_refuses_to_start(
    tmp_path: Path, postgres_url: str
) -> None:
    app = issuer_flask("pg", instance_path=str(tmp_path))
    with pytest.raises(IssuerConfigurationError, match="LICENSECHAIN_ENCRYPTION_KEY"):
        LicenseChain(app, database_url=postgres_url)
    assert "licensechain" not in app.extensions


def test_postgres_with_a_key_from_app_config(tmp_path: Path, postgres_url: str) -> None:
    app = issuer_flask("pg", instance_path=str(tmp_path))
    app.config.update(
        LICENSECHAIN_DATABASE_URL=postgres_url,
        LICENSECHAIN_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
    )
    LicenseChain(app)
    try:
        assert _state(app).store.backend == "postgresql"  # type: ignore[union-attr]
        assert not (tmp_path / KEY_FILENAME).exists()
        assert app.test_client().get("/v1/health").get_json()["status"] == "ok"
    finally:
        _dispose(app)


def test_embedded_default_warns_outside_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="licensechain.issuer")
    quiet = issuer_flask("quiet", instance_path=str(tmp_path / "a"))
    quiet.testing = True
    LicenseChain(quiet)
    _dispose(quiet)
    assert not [r for r in caplog.records if "embedded default" in r.getMessage()]
    loud = issuer_flask("loud", instance_path=str(tmp_path / "b"))
    LicenseChain(loud)
    _dispose(loud)
    warnings = [r for r in caplog.records if "embedded default" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    configured = issuer_flask("configured", instance_path=str(tmp_path / "c"))
    LicenseChain(configured, encryption_key=TEST_ENCRYPTION_KEY)
    _dispose(configured)
    assert len([r for r in caplog.records if "embedded default" in r.getMessage()]) == 1


def test_app_factory_serves_several_apps(tmp_path: Path) -> None:
    ext = LicenseChain(ratelimit_per_ip="2/minute")
    apps = []
    for name in ("one", "two"):
        app = issuer_flask(name, instance_path=str(tmp_path / name))
        ext.init_app(app)
        apps.append(app)
    one, two = (_state(a) for a in apps)
    try:
        assert one is not two
        assert one.store is not two.store and one.limiter is not two.limiter
        assert one.keyring.active_key().kid != two.keyring.active_key().kid  # type: ignore[union-attr]
        lic = one.store.licenses.create(one.store.apps.create("A").id)  # type: ignore[union-attr]
        token = (
            apps[0]
            .test_client()
            .post("/v1/licenses/verify", json={"key": lic.key})
            .get_json()["license_token"]
        )
        # app two has its own keys: the token means nothing there
        answer = apps[1].test_client().post("/v1/licenses/introspect", json={"token": token})
        assert answer.get_json() == {"active": False, "reason": "token_invalid"}
        # and its own rate limits
        for _ in range(2):
            assert apps[1].test_client().get("/v1/licenses/jwks").status_code == 200
        assert apps[1].test_client().get("/v1/licenses/jwks").status_code == 429
        assert apps[0].test_client().get("/v1/licenses/jwks").status_code == 200
    finally:
        for app in apps:
            _dispose(app)


def test_init_app_twice_is_an_error(tmp_path: Path) -> None:
    app = issuer_flask("twice", instance_path=str(tmp_path))
    ext = LicenseChain(app)
    try:
        with pytest.raises(RuntimeError, match="already registered"):
            ext.init_app(app)
    finally:
        _dispose(app)


def test_get_state_without_init_app_says_so() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        get_state(Flask("bare"))


def test_blueprint_can_be_left_out(tmp_path: Path) -> None:
    app = issuer_flask("no_api", instance_path=str(tmp_path))
    LicenseChain(app, register_blueprint=False)
    try:
        response = app.test_client().get("/v1/licenses/jwks")
        assert response.status_code == 404
        assert response.mimetype == "text/html"  # the host app's own 404, not ours
        assert _state(app).keyring is not None
    finally:
        _dispose(app)


def test_cli_group_is_registered(tmp_path: Path) -> None:
    app = issuer_flask("cli", instance_path=str(tmp_path))
    LicenseChain(app)
    try:
        assert "licensechain" in app.cli.commands
        assert {"init", "rotate-keys"} <= set(app.cli.commands["licensechain"].commands)
    finally:
        _dispose(app)


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown LicenseChain option"):
        LicenseChain(issuer_flask("x", instance_path=str(tmp_path)), no_such_option=1)
    with pytest.raises(KeyMaterialError):
        LicenseChain(issuer_flask("y", instance_path=str(tmp_path / "y")), encryption_key="short")
    # refused as a setting, before a key exists: a stored key would hide it until rotation
    with pytest.raises(ConfigError, match="LICENSECHAIN_KEY_SIZE"):
        LicenseChain(issuer_flask("z", instance_path=str(tmp_path / "z")), key_size=1024)


# -- the sealing-key file ------------------------------------------------------------------


def test_key_file_is_created_once_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / KEY_FILENAME
    first = read_or_create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_key_file(path) == first
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY_FILENAME]  # no temp files


def test_key_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / KEY_FILENAME
    read_or_create_key_file(path)
    os.chmod(path, 0o644)
    caplog.set_level(logging.WARNING, logger="licensechain.issuer")
    read_or_create_key_file(path)
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


# -- workers racing on first start (real processes) ------------------------------------------

_WORKER = """
import json, sys
from flask import Flask
from flask_licensechain import LicenseChain
app = Flask("worker", instance_path=sys.argv[1])
app.testing = True
LicenseChain(app, **json.loads(sys.argv[2]))
state = app.extensions["licensechain"]
print(state.keyring.active_key().kid, flush=True)
"""


def _race(instance: Path, options: dict[str, str], workers: int = 4) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(instance), json.dumps(options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(workers)
    ]
    kids = set()
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        kids.add(out.strip())
    return kids


@pytest.mark.slow
def test_workers_racing_on_first_start_agree_on_one_key_sqlite(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    kids = _race(instance, {})
    assert len(kids) == 1
    app = Flask("check", instance_path=str(instance))
    app.testing = True
    LicenseChain(app)
    try:
        store = _state(app).store
        assert store is not None
        assert [k.kid for k in store.signing_keys.trusted(datetime.now(UTC))] == list(kids)
        assert sorted(p.name for p in instance.iterdir() if "key" in p.name) == [KEY_FILENAME]
    finally:
        _dispose(app)


@pytest.mark.slow
def test_workers_racing_on_first_start_agree_on_one_key_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    options = {"database_url": postgres_url, "encryption_key": TEST_ENCRYPTION_KEY}
    kids = _race(tmp_path, options)
    assert len(kids) == 1
    made = make_issuer(tmp_path / "check", postgres_url)
    try:
        assert [k.kid for k in made.store.signing_keys.trusted(datetime.now(UTC))] == list(kids)
    finally:
        close_issuer(made)
