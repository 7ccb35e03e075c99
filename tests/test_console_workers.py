"""A revoked console session is refused on the next request by every worker: gunicorn with
several worker processes, sessions in the shared store (SQLite here, as embedded)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from console_support import create_person, csrf_from, make_console_app, session_cookie_for
from issuer_support import TEST_ENCRYPTION_KEY

HERE = Path(__file__).resolve().parent
WORKERS = 3

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, object]]:
    db = f"sqlite:///{tmp_path}/console.db"
    seed = make_console_app(tmp_path, db, SECRET_KEY="workers secret")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSECHAIN_")}
    env.update(
        PYTHONPATH=str(HERE),
        CONSOLE_TEST_INSTANCE=str(tmp_path / "instance"),
        SECRET_KEY="workers secret",
        LICENSECHAIN_DATABASE_URL=db,
        LICENSECHAIN_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY,
        LICENSECHAIN_ISSUER=f"http://127.0.0.1:{port}/v1",
        LICENSECHAIN_CONSOLE="true",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--log-level",
            "warning",
            "console_server:create_app()",
        ],
        env=env,
    )
    try:
        yield f"http://127.0.0.1:{port}", seed
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pages(url: str, cookie: str, count: int) -> list[tuple[int, int]]:
    answers = []
    for _ in range(count):  # a fresh connection each: gunicorn hands them to any worker
        response = httpx.get(f"{url}/console/account", cookies={"lc_console": cookie}, timeout=30)
        answers.append((response.status_code, int(response.headers["X-Worker-PID"])))
    return answers


def test_revocation_reaches_every_worker(served: tuple[str, object]) -> None:
    url, seed = served
    person = create_person(seed, "owner")
    victim = session_cookie_for(seed, person)
    admin = session_cookie_for(seed, person)
    deadline = time.monotonic() + 60
    seen: set[int] = set()
    while len(seen) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {seen} answered"
        try:
            answers = _pages(url, victim, 6)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        assert {status for status, _ in answers} == {200}
        seen |= {pid for _, pid in answers}
    with httpx.Client(base_url=url, cookies={"lc_console": admin}, timeout=30) as client:
        page = client.get("/console/account/sessions").text
        mine = re.search(r'id="session-([0-9a-f]+)" class="current"', page).group(1)
        handles = [h for h in re.findall(r'id="session-([0-9a-f]+)"', page) if h != mine]
        assert len(handles) == 1
        done = client.post(
            f"/console/account/sessions/{handles[0]}/revoke", data={"csrf_token": csrf_from(page)}
        )
        assert done.status_code == 302, done.text
    # From now on every worker refuses it, on the first request each one gets.
    refused_by: set[int] = set()
    deadline = time.monotonic() + 60
    while len(refused_by) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {refused_by} answered"
        for status, pid in _pages(url, victim, 6):
            assert status == 302
            refused_by.add(pid)
