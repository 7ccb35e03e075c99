"""Several gunicorn workers starting at once on an empty store create its schema once.

Each worker loads the app, says it is ready, and waits for a "go" file before calling
``LicenseChain(app)``; then all of them run the start-time schema check together. Every worker
must boot (gunicorn stops when one fails to), the schema must be recorded once at the head, the
"created" log line must appear exactly once (the others found it done behind the lock), and
there must be exactly one active signing key. SQLite (the embedded default, no configuration)
and PostgreSQL.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import free_port

from flask_licensechain.store import migrate, open_store

pytestmark = [pytest.mark.slow]

WORKERS = 4
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(64, 96))).decode().rstrip("=")

APP_MODULE = '''
"""tests/test_migrations_race.py: an issuer whose workers start LicenseChain together."""
import logging
import os
import time
from pathlib import Path

from flask import Flask

from flask_licensechain import LicenseChain
from flask_licensechain.config import PREFIX

logging.basicConfig(level=logging.WARNING, format="%(process)d %(name)s %(message)s")
logging.getLogger("licensechain.store.migrate").setLevel(logging.INFO)


def create_app():
    app = Flask("race_issuer", instance_path=os.environ["RACE_INSTANCE_PATH"])
    app.config.update({k: v for k, v in os.environ.items() if k.startswith(PREFIX)})
    signals = Path(os.environ["RACE_SIGNALS"])
    (signals / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 90
    while not (signals / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    LicenseChain(app)

    @app.after_request
    def name_the_worker(response):
        response.headers["X-Worker-PID"] = str(os.getpid())
        return response

    return app
'''


def wait_until(condition: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, str], str]:
    """The servers' configuration and the URL the test reads the store with."""
    if request.param == "sqlite":  # the embedded default: nothing configured
        return {}, f"sqlite:///{tmp_path / 'instance' / 'licensechain.db'}"
    url: str = request.getfixturevalue("postgres_url")
    config = {"LICENSECHAIN_DATABASE_URL": url, "LICENSECHAIN_ENCRYPTION_KEY": ENCRYPTION_KEY}
    return config, url


def test_workers_starting_together_create_the_schema_once(
    tmp_path: Path, database: tuple[dict[str, str], str]
) -> None:
    config, url = database
    signals = tmp_path / "signals"
    signals.mkdir()
    (tmp_path / "race_issuer_app.py").write_text(textwrap.dedent(APP_MODULE))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSECHAIN_")}
    env.update(
        config,
        LICENSECHAIN_ISSUER="https://licenses.example.test/v1",
        RACE_INSTANCE_PATH=str(tmp_path / "instance"),
        RACE_SIGNALS=str(signals),
    )
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--chdir",
                str(tmp_path),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(WORKERS),
                "--timeout",
                "120",
                "--log-level",
                "warning",
                "race_issuer_app:create_app()",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: len(list(signals.glob("ready-*"))) == WORKERS, "every worker")
        (signals / "go").touch()
        seen: set[str] = set()

        def every_worker_answered() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
            except httpx.TransportError:
                return False
            assert response.status_code == 200, response.text
            seen.add(response.headers["X-Worker-PID"])
            return len(seen) == WORKERS

        wait_until(every_worker_answered, "an answer from every worker")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    output = log_path.read_text()
    assert "Traceback" not in output, output
    assert output.count("created the LicenseChain schema") == 1, output
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM lc_schema_version")).all()
            active = conn.execute(
                sa.text("SELECT count(*) FROM lc_signing_keys WHERE state = 'active'")
            ).scalar()
        assert [v[0] for v in versions] == [migrate.head_revision()]
        assert active == 1
    finally:
        store.dispose()
