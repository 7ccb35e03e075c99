"""Revocation across real processes: gunicorn workers, a gateway, and a Redis that dies.

- Embedded default (SQLite, no Redis), gunicorn with 4 workers: a revoked token, a
  suspended license's token and a narrowed license's tokens are refused by every worker
  once the revocation bound (the contract's 1 s without Redis) has passed, sampled many
  times per worker.
- PostgreSQL and our own Redis: the issuer (gunicorn, 2 workers, ``@requires_feature``)
  and the gateway (2 workers, JWKS only) refuse the same tokens. Then Redis is killed with
  ``SHUTDOWN NOSAVE`` and restarted empty while a client keeps presenting them: never a
  200, a 503 window at the gateway at most, 401 again afterwards with no manual step; a
  license suspended while Redis was down is refused by the gateway once Redis is back.

Every request goes on a fresh connection, and the answers name the worker (``X-Worker-PID``).
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from conftest import free_port
from flask import Flask
from gateway_support.processes import gateway_server, upstream_server

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.store import Store

pytestmark = [pytest.mark.slow]

ISSUER = "https://licenses.example.test/v1"
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(64, 96))).decode().rstrip("=")
#: The contract's revocation bound without Redis (the poll interval is half of it).
BOUND_WITHOUT_REDIS = 1.0
CLIENTS = 8

APP_MODULE = '''
"""The issuer app of tests/test_revocation_processes.py, configured from the environment."""
import os

from flask import Flask

from flask_licensechain import LicenseChain, requires_feature
from flask_licensechain.config import PREFIX


def create_app():
    app = Flask("revocation_issuer", instance_path=os.environ["RV_INSTANCE_PATH"])
    app.config.update({k: v for k, v in os.environ.items() if k.startswith(PREFIX)})
    LicenseChain(app)

    @app.get("/export")
    @requires_feature("export")
    def export():
        return {"exported": True}

    @app.after_request
    def name_the_worker(response):
        response.headers["X-Worker-PID"] = str(os.getpid())
        return response

    return app
'''


@dataclass
class Issuer:
    url: str
    store: Store
    admin_key: str
    process: subprocess.Popen[bytes]
    workers: int

    def admin(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )

    def token(self, key: str) -> str:
        answer = httpx.post(f"{self.url}/v1/licenses/verify", json={"key": key}, timeout=30)
        body = answer.json()
        assert body["valid"] is True, body
        return str(body["license_token"])

    def gated(self, token: str) -> tuple[int, int]:
        """(status, worker pid) of one gated request on a fresh connection."""
        response = httpx.get(
            f"{self.url}/export", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        return response.status_code, int(response.headers["X-Worker-PID"])

    def burst(self, token: str, count: int) -> list[tuple[int, int]]:
        with ThreadPoolExecutor(CLIENTS) as pool:
            return list(pool.map(lambda _: self.gated(token), range(count)))

    def wait_for_all_workers(self, timeout: float = 60) -> None:
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < self.workers:
            assert time.monotonic() < deadline, f"only workers {seen} answered"
            assert self.process.poll() is None, "gunicorn died"
            try:
                with ThreadPoolExecutor(CLIENTS) as pool:
                    answers = list(pool.map(lambda _: self._health_pid(), range(CLIENTS * 2)))
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            seen |= set(answers)

    def _health_pid(self) -> int:
        response = httpx.get(f"{self.url}/v1/health", timeout=30)
        return int(response.headers["X-Worker-PID"])


@contextmanager
def issuer_server(tmp_path: Path, workers: int, **config: str) -> Iterator[Issuer]:
    env_config = {
        "LICENSECHAIN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "LICENSECHAIN_ISSUER": ISSUER,
        "LICENSECHAIN_RATELIMIT_ENABLED": "false",
        # The gated route serves every app of this issuer: no audience, on purpose.
        "LICENSECHAIN_VERIFY_AUDIENCE": "false",
        **{"LICENSECHAIN_" + name.upper(): value for name, value in config.items()},
    }
    instance = tmp_path / "instance"
    (tmp_path / "rv_issuer_app.py").write_text(textwrap.dedent(APP_MODULE))
    seed = Flask("revocation_seed", instance_path=str(instance))
    seed.config.update(env_config)
    LicenseChain(seed)
    state = get_state(seed)
    assert state.store is not None
    _, admin_key = state.store.api_keys.create("revocation test", ["*"])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSECHAIN_")}
    env.update(env_config, RV_INSTANCE_PATH=str(instance))
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
            str(workers),
            "--log-level",
            "warning",
            "rv_issuer_app:create_app()",
        ],
        env=env,
    )
    try:
        issuer = Issuer(f"http://127.0.0.1:{port}", state.store, admin_key, process, workers)
        issuer.wait_for_all_workers()
        yield issuer
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        state.denylist.close()
        state.store.dispose()


@dataclass
class Licenses:
    """One license per kind of revocation, and a token of each issued before it."""

    app_id: str
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


KINDS = ("token revoked", "suspended", "revoked", "shortened", "feature removed", "plan changed")


def seed_licenses(issuer: Issuer, kinds: tuple[str, ...] = KINDS) -> Licenses:
    app = issuer.store.apps.create("Revocation", tier="enterprise")  # 24 h tokens
    made = Licenses(app.id)
    for kind in kinds:
        lic = issuer.store.licenses.create(
            app.id,
            plan="pro",
            features=["export", "reports"],
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        made.keys[kind], made.ids[kind] = lic.key, lic.id
        made.tokens[kind] = issuer.token(lic.key)
    return made


def apply_change(issuer: Issuer, made: Licenses, kind: str) -> None:
    lid = made.ids[kind]
    if kind == "token revoked":
        body: dict[str, Any] = {"license_token": made.tokens[kind]}
        response = issuer.admin("POST", "/licenses/revoke-token", body)
    elif kind == "suspended":
        response = issuer.admin("PATCH", f"/licenses/{lid}/suspend", {})
    elif kind == "revoked":
        response = issuer.admin("PATCH", f"/licenses/{lid}/revoke", {})
    elif kind == "shortened":
        response = issuer.admin(
            "PATCH", f"/licenses/{lid}/extend", {"expiresAt": "2000-01-01T00:00:00Z"}
        )
    elif kind == "feature removed":
        response = issuer.admin("PATCH", f"/licenses/{lid}", {"features": ["export"]})
    else:
        response = issuer.admin("PATCH", f"/licenses/{lid}", {"plan": "basic"})
    assert response.status_code == 200, response.text


# -- embedded default, 4 workers ------------------------------------------------------------


def test_every_worker_refuses_within_the_bound_without_redis(tmp_path: Path) -> None:
    with issuer_server(tmp_path, workers=4) as issuer:
        made = seed_licenses(issuer)
        for kind, token in made.tokens.items():  # every worker has verified and cached them
            warm = issuer.burst(token, 40)
            assert {status for status, _ in warm} == {200}, kind
            assert len({pid for _, pid in warm}) >= 2
        for kind in KINDS:
            apply_change(issuer, made, kind)
        time.sleep(BOUND_WITHOUT_REDIS)  # the contract's bound: from here, never a 200
        refused_by: dict[str, set[int]] = {kind: set() for kind in KINDS}
        deadline = time.monotonic() + 60
        while any(len(pids) < issuer.workers for pids in refused_by.values()):
            assert time.monotonic() < deadline, {k: sorted(v) for k, v in refused_by.items()}
            for kind, token in made.tokens.items():
                for status, pid in issuer.burst(token, 24):
                    assert status == 401, (kind, pid)
                    refused_by[kind].add(pid)
        # A fresh verify of a narrowed license gives a token with the new rights.
        fresh = issuer.token(made.keys["plan changed"])
        assert {status for status, _ in issuer.burst(fresh, 24)} == {200}


# -- PostgreSQL + Redis: the gateway and the decorator, and Redis losing its data ---------


class OwnRedis:
    """A redis-server of our own on a free port, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis_lib.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def shutdown_nosave(self) -> None:
        client = redis_lib.Redis.from_url(self.url)
        try:
            client.shutdown(nosave=True)
        except redis_lib.ConnectionError:
            pass  # the server closes the connection as it goes
        client.close()
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def gateway_toml(
    directory: Path, issuer: Issuer, app_id: str, redis_url: str, upstream: str
) -> Path:
    path = directory / "gateway.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            issuer = "{ISSUER}"
            audience = "{app_id}"
            jwks_url = "{issuer.url}/v1/licenses/jwks"
            denylist_url = "{redis_url}"

            [[rules]]
            path = "/**"
            features = ["export"]

            [gateway]
            upstream = "{upstream}"
            """
        ),
        encoding="utf-8",
    )
    return path


class Presenter:
    """A client that keeps presenting tokens to the gateway and the decorator."""

    def __init__(self, targets: dict[str, str], tokens: dict[str, str]) -> None:
        self.targets = targets
        self.tokens = dict(tokens)
        self.answers: list[tuple[float, str, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Presenter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for target, url in self.targets.items():
                for kind, token in list(self.tokens.items()):
                    try:
                        response = httpx.get(
                            url, headers={"Authorization": f"Bearer {token}"}, timeout=10
                        )
                        status = response.status_code
                    except httpx.TransportError:
                        status = 0
                    self.answers.append((time.monotonic(), target, kind, status))
            time.sleep(0.01)

    def latest(self, target: str, kind: str) -> int | None:
        for _, t, k, status in reversed(self.answers):
            if t == target and k == kind:
                return status
        return None


def all_refused(issuer: Issuer, gateway_url: str, tokens: dict[str, str]) -> None:
    for kind, token in tokens.items():
        statuses = {issuer.gated(token)[0] for _ in range(10)}
        statuses |= {
            httpx.get(
                f"{gateway_url}/report", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            for _ in range(10)
        }
        assert statuses == {401}, (kind, statuses)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_gateway_and_decorator_survive_redis_losing_its_data(
    tmp_path: Path, postgres_url: str, own_redis: OwnRedis
) -> None:
    kinds = ("token revoked", "suspended", "shortened")
    with (
        issuer_server(
            tmp_path, workers=2, database_url=postgres_url, redis_url=own_redis.url
        ) as issuer,
        upstream_server() as upstream,
    ):
        made = seed_licenses(issuer, (*kinds, "suspended while down"))
        for token in made.tokens.values():  # warms both workers (and fills Redis)
            assert {status for status, _ in issuer.burst(token, 16)} == {200}
        config = gateway_toml(tmp_path, issuer, made.app_id, own_redis.url, upstream.url)
        with gateway_server(config, workers=2) as gateway:
            gate_url = f"{gateway.url}/report"
            for token in made.tokens.values():
                response = httpx.get(gate_url, headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 200, response.text

            for kind in kinds:
                apply_change(issuer, made, kind)
            refused = {kind: made.tokens[kind] for kind in kinds}
            deadline = time.monotonic() + 30
            while True:
                try:
                    all_refused(issuer, gateway.url, refused)
                    break
                except AssertionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)

            targets = {"gateway": gate_url, "decorator": f"{issuer.url}/export"}
            with Presenter(targets, refused) as presenter:
                time.sleep(0.5)
                own_redis.shutdown_nosave()
                # Written while Redis is down: the store keeps it.
                suspend = issuer.admin(
                    "PATCH", f"/licenses/{made.ids['suspended while down']}/suspend", {}
                )
                assert suspend.status_code == 200, suspend.text
                time.sleep(1.5)
                own_redis.start()  # empty
                deadline = time.monotonic() + 60
                while not all(
                    presenter.latest(target, kind) == 401 for target in targets for kind in kinds
                ):
                    assert time.monotonic() < deadline, presenter.answers[-12:]
                    time.sleep(0.1)
                time.sleep(1.0)  # and it stays so
            answers = presenter.answers
            assert answers, "the client never got an answer"
            assert all(status != 200 for *_, status in answers), [a for a in answers if a[3] == 200]
            assert {status for _, target, _, status in answers if target == "decorator"} == {401}
            unavailable = [a for a in answers if a[3] == 503]
            assert all(target == "gateway" for _, target, _, _ in unavailable)
            if unavailable:
                window = unavailable[-1][0] - unavailable[0][0]
                print(f"gateway 503 window: {window:.2f} s over {len(unavailable)} answers")
            # The suspension written while Redis was down reaches the gateway, no manual step.
            late = made.tokens["suspended while down"]
            deadline = time.monotonic() + 30
            while (
                httpx.get(gate_url, headers={"Authorization": f"Bearer {late}"}).status_code != 401
            ):
                assert time.monotonic() < deadline, "the gateway never learnt the suspension"
                time.sleep(0.1)
            assert issuer.gated(late)[0] == 401
            # Redis holds the complete denylist again, copied from the store.
            client = redis_lib.Redis.from_url(own_redis.url)
            assert client.exists(f"lc:deny:s:{made.ids['suspended while down']}") == 1
            assert client.exists(f"lc:deny:s:{made.ids['suspended']}") == 1
            client.close()
