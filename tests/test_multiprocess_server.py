"""The issuer under gunicorn with several worker processes, as in production.

- A token revoked through one worker is refused at once by introspect in every other worker
  (Redis denylist), even by workers that had already verified and cached it.
- Concurrent verifies with distinct hardware ids against PostgreSQL bind exactly
  ``maxDevices`` devices, however the requests spread over workers and their threads.
- With the denylist's Redis unreachable, introspect keeps following the store (a revoked
  token is refused by every worker, a live one stays active) and health says degraded.

Each response names the worker process that answered (``X-Worker-PID``, added by the test
app), so the tests can show that several workers took part.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import free_port
from flask import Flask

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.store import Store

pytestmark = [pytest.mark.slow]

WORKERS = 3
#: Threads per worker when the gthread worker class is used (the binding race).
THREADS = 4
#: Client threads firing at once: more than the workers can take, so every worker is busy.
CLIENTS = 12
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32, 64))).decode().rstrip("=")

APP_MODULE = '''
"""The issuer app of tests/test_multiprocess_server.py, configured from the environment."""
import os

from flask import Flask

from flask_licensechain import LicenseChain
from flask_licensechain.config import PREFIX


def create_app():
    app = Flask("multiprocess_issuer", instance_path=os.environ["MP_INSTANCE_PATH"])
    app.config.update({k: v for k, v in os.environ.items() if k.startswith(PREFIX)})
    LicenseChain(app)

    @app.after_request
    def name_the_worker(response):
        response.headers["X-Worker-PID"] = str(os.getpid())
        return response

    return app
'''


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    pid: int


@dataclass
class Cluster:
    """gunicorn serving one issuer store, plus a handle on that store for seeding."""

    base_url: str
    store: Store
    admin_key: str
    process: subprocess.Popen[bytes]

    @property
    def api(self) -> str:
        return self.base_url + "/v1"

    def post(self, path: str, body: dict[str, Any], admin: bool = False) -> Answer:
        """One request on a fresh connection, so any worker may take it."""
        headers = {"Authorization": f"Bearer {self.admin_key}"} if admin else {}
        response = httpx.post(self.api + path, json=body, headers=headers, timeout=30)
        return Answer(response.status_code, response.json(), int(response.headers["X-Worker-PID"]))

    def many(self, count: int, call: Callable[[int], Answer]) -> list[Answer]:
        """``count`` calls from ``CLIENTS`` client threads that start together."""
        parallel = CLIENTS
        barrier = threading.Barrier(min(parallel, count))

        def start_together(index: int) -> Answer:
            if index < barrier.parties:
                barrier.wait(timeout=30)
            return call(index)

        with ThreadPoolExecutor(parallel) as pool:
            return list(pool.map(start_together, range(count)))

    def wait_for_all_workers(self, timeout: float = 60) -> None:
        """Until every worker has booted and answered (they start one after another)."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < WORKERS:
            assert time.monotonic() < deadline, f"only workers {seen} answered"
            assert self.process.poll() is None, "gunicorn died"
            try:
                answers = self.many(CLIENTS, lambda _: self.health())
            except httpx.TransportError:  # not listening yet
                time.sleep(0.2)
                continue
            seen |= {a.pid for a in answers}

    def health(self) -> Answer:
        response = httpx.get(self.api + "/health", timeout=30)
        return Answer(response.status_code, response.json(), int(response.headers["X-Worker-PID"]))


def _seed_store(instance: Path, config: dict[str, str]) -> tuple[Store, Any, str]:
    """Open the store as the servers will (tables, signing key) and make an admin key."""
    seed = Flask("multiprocess_seed", instance_path=str(instance))
    seed.config.update(config)
    LicenseChain(seed)
    state = get_state(seed)
    assert state.store is not None
    _, admin_key = state.store.api_keys.create("multiprocess test", ["*"])
    return state.store, state.denylist, admin_key


@contextmanager
def gunicorn_cluster(tmp_path: Path, threads: int = 1, **config: str) -> Iterator[Cluster]:
    """gunicorn with ``WORKERS`` processes. Sync workers (``threads=1``) take one request at a
    time, so a burst of requests is spread over all of them; gthread workers add races
    between threads of one process."""
    env_config = {
        "LICENSECHAIN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "LICENSECHAIN_ISSUER": "https://licenses.example.test/v1",
        "LICENSECHAIN_RATELIMIT_ENABLED": "false",  # the tests fire bursts on purpose
        **{"LICENSECHAIN_" + name.upper(): value for name, value in config.items()},
    }
    instance = tmp_path / "instance"
    (tmp_path / "mp_issuer_app.py").write_text(textwrap.dedent(APP_MODULE))
    store, seed_denylist, admin_key = _seed_store(instance, env_config)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSECHAIN_")}
    env.update(env_config, MP_INSTANCE_PATH=str(instance))
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
            "--threads",
            str(threads),
            "--worker-class",
            "gthread" if threads > 1 else "sync",
            "--log-level",
            "warning",
            "mp_issuer_app:create_app()",
        ],
        env=env,
    )
    try:
        cluster = Cluster(f"http://127.0.0.1:{port}", store, admin_key, process)
        cluster.wait_for_all_workers()
        yield cluster
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        seed_denylist.close()
        store.dispose()


def closed_port() -> int:
    """A loopback port with nothing listening (bound to nothing after free_port returns)."""
    return free_port()


# -- revocation across workers --------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.postgres
def test_token_revoked_in_one_worker_is_refused_by_all_at_once(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with gunicorn_cluster(tmp_path, database_url=postgres_url, redis_url=redis_url) as cluster:
        seller = cluster.store.apps.create("Multiprocess", tier="pro")
        lic = cluster.store.licenses.create(seller.id, features=["export"])
        verified = cluster.post("/licenses/verify", {"key": lic.key})
        assert verified.body["valid"] is True
        token = verified.body["license_token"]

        def introspect(_: int) -> Answer:
            return cluster.post("/licenses/introspect", {"license_token": token})

        # Every worker verifies the token first (and caches it): all say active.
        before = cluster.many(60, introspect)
        assert all(a.status == 200 and a.body["active"] is True for a in before)
        assert len({a.pid for a in before}) >= 2

        revoked = cluster.post("/licenses/revoke-token", {"license_token": token}, admin=True)
        assert revoked.status == 200
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        assert revoked.body == {"revoked": True, "jti": jti}

        # At once: the very next requests, on fresh connections, in any worker.
        after = cluster.many(60, introspect)
        refusals = {(a.status, a.body.get("active"), a.body.get("reason")) for a in after}
        assert refusals == {(200, False, "token_revoked")}
        answering = {a.pid for a in after}
        assert len(answering) >= 2
        assert answering - {revoked.pid}, "no other worker than the revoking one answered"


# -- device binding under concurrency ----------------------------------------------------------


@pytest.mark.postgres
def test_parallel_verifies_bind_exactly_max_devices_on_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    with gunicorn_cluster(tmp_path, threads=THREADS, database_url=postgres_url) as cluster:
        seller = cluster.store.apps.create("Binding", tier="free")
        lic = cluster.store.licenses.create(seller.id, max_devices=2)
        requests = 36
        answers = cluster.many(
            requests,
            lambda i: cluster.post("/licenses/verify", {"key": lic.key, "hwuid": f"hw-{i:02d}"}),
        )
        assert all(a.status == 200 for a in answers)
        accepted = [i for i, a in enumerate(answers) if a.body["valid"] is True]
        refused = {a.body.get("reason") for a in answers if a.body["valid"] is False}
        assert len(accepted) == 2
        assert refused == {"hardware_id_mismatch"}
        assert all(answers[i].body["hwBound"] is True for i in accepted)
        assert len({a.pid for a in answers}) >= 2  # the race really spanned processes

        bound = cluster.store.licenses.get(lic.id).devices
        assert sorted(d.hwuid for d in bound) == sorted(f"hw-{i:02d}" for i in accepted)
        # A bound device still passes; any other is still refused.
        again = cluster.post("/licenses/verify", {"key": lic.key, "hwuid": f"hw-{accepted[0]:02d}"})
        assert again.body["valid"] is True
        other = next(i for i in range(requests) if i not in accepted)
        refused_again = cluster.post(
            "/licenses/verify", {"key": lic.key, "hwuid": f"hw-{other:02d}"}
        )
        assert refused_again.body == {
            "valid": False,
            "reason": "hardware_id_mismatch",
            "status": "ACTIVE",
        }


# -- fail closed -------------------------------------------------------------------------------


def test_introspect_keeps_following_the_store_when_the_denylist_redis_is_down(
    tmp_path: Path,
) -> None:
    # The store records every revocation: an unreachable Redis costs speed, never a wrong
    # answer. Health says the dependency is down.
    dead_redis = f"redis://127.0.0.1:{closed_port()}/0"
    with gunicorn_cluster(tmp_path, denylist_url=dead_redis) as cluster:
        seller = cluster.store.apps.create("Redis down", tier="pro")
        lic = cluster.store.licenses.create(seller.id)
        kept = cluster.store.licenses.create(seller.id)
        token = cluster.post("/licenses/verify", {"key": lic.key}).body["license_token"]
        other = cluster.post("/licenses/verify", {"key": kept.key}).body["license_token"]
        revoked = cluster.post("/licenses/revoke-token", {"license_token": token}, admin=True)
        assert revoked.status == 200

        def introspect(which: str) -> Answer:
            return cluster.post("/licenses/introspect", {"license_token": which})

        deadline = time.monotonic() + 30
        while True:  # every worker follows the store within its poll interval
            answers = cluster.many(30, lambda _: introspect(token))
            if all(a.body.get("reason") == "token_revoked" for a in answers):
                break
            assert all(a.body.get("active") is not None for a in answers)
            assert time.monotonic() < deadline
        assert len({a.pid for a in answers}) >= 2
        assert {a.body["active"] for a in cluster.many(20, lambda _: introspect(other))} == {True}

        health = cluster.health()
        assert health.status == 503
        assert health.body["status"] == "degraded"
        assert "denylist" in health.body["failing"]
