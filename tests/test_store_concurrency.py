"""Concurrency rules of the store, with real processes (multiprocessing 'spawn').

Each worker opens its own store on the same database, waits at a barrier so all start
together, then races the others. Run on SQLite (one file, BEGIN IMMEDIATE) and PostgreSQL
(row lock with SELECT ... FOR UPDATE; one-active-key index plus retry for rotations).
"""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from queue import Empty
from typing import Any

import pytest

from flask_licensechain.store import SigningKeyRecord, Store, open_store

pytestmark = pytest.mark.slow

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
WORKERS = 10
MAX_DEVICES = 3
LICENSES = 4
ROTATORS = 6
DEADLINE = 90.0


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    opened.upgrade_schema()
    try:
        yield opened
    finally:
        opened.dispose()


def signing_record(kid: str) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=kid,
        public_jwk={"kty": "RSA", "kid": kid, "n": "n-" + kid, "e": "AQAB"},
        sealed_private_key=b"\x01" + kid.encode(),
        state="active",
        created_at=datetime.now(UTC),
        retired_at=None,
        expires_at=None,
    )


# Workers run in fresh interpreters: module-level functions, plain arguments.


def bind_worker(url: str, license_ids: list[str], hwuid: str, barrier: Barrier, out: Any) -> None:
    store = open_store(url, busy_timeout=60)
    try:
        order = list(license_ids)
        random.shuffle(order)
        results = []
        barrier.wait(timeout=DEADLINE)
        for license_id in order:
            outcome = store.licenses.bind_device(license_id, hwuid, datetime.now(UTC))
            results.append((license_id, outcome.result))
        out.put((hwuid, results))
    except BaseException as error:
        out.put((hwuid, repr(error)))
    finally:
        store.dispose()


def rotate_worker(url: str, kid: str, barrier: Barrier, out: Any) -> None:
    store = open_store(url, busy_timeout=60)
    try:
        now = datetime.now(UTC)
        barrier.wait(timeout=DEADLINE)
        store.signing_keys.rotate(
            signing_record(kid), now=now, old_expires_at=now + timedelta(hours=25)
        )
        out.put((kid, "rotated"))
    except BaseException as error:
        out.put((kid, repr(error)))
    finally:
        store.dispose()


def run_together(target: Any, argument_lists: list[tuple[Any, ...]]) -> list[Any]:
    """Start one process per argument tuple, release them at once, collect their answers."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(argument_lists))
    out = ctx.Queue()
    processes = [
        ctx.Process(target=target, args=(*arguments, barrier, out)) for arguments in argument_lists
    ]
    for process in processes:
        process.start()
    answers = []
    try:
        for _ in processes:
            answers.append(out.get(timeout=DEADLINE))
    except Empty:
        pytest.fail(f"only {len(answers)} of {len(processes)} workers answered")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    return answers


def test_concurrent_binds_never_exceed_max_devices(store: Store, store_url: str) -> None:
    app = store.apps.create("Race")
    license_ids = [
        store.licenses.create(app.id, max_devices=MAX_DEVICES).id for _ in range(LICENSES)
    ]
    answers = run_together(
        bind_worker, [(store_url, license_ids, f"hw-{n}") for n in range(WORKERS)]
    )
    failures = [answer for answer in answers if isinstance(answer[1], str)]
    assert failures == []
    for license_id in license_ids:
        outcomes = {hwuid: dict(results)[license_id] for hwuid, results in answers}
        assert Counter(outcomes.values()) == {"bound": MAX_DEVICES, "full": WORKERS - MAX_DEVICES}
        stored = store.licenses.get(license_id)
        assert stored is not None
        bound = {hwuid for hwuid, result in outcomes.items() if result == "bound"}
        assert {device.hwuid for device in stored.devices} == bound


def test_concurrent_rotations_leave_exactly_one_active_key(store: Store, store_url: str) -> None:
    store.signing_keys.add(signing_record("kid-initial"))
    kids = [f"kid-{n}" for n in range(ROTATORS)]
    answers = run_together(rotate_worker, [(store_url, kid) for kid in kids])
    assert sorted(answers) == sorted((kid, "rotated") for kid in kids)
    trusted = store.signing_keys.trusted(datetime.now(UTC))
    states = Counter(key.state for key in trusted)
    assert states == {"active": 1, "retiring": ROTATORS}
    active = store.signing_keys.active()
    assert active is not None and active.kid in kids and trusted[0] == active
    assert {key.kid for key in trusted} == {"kid-initial", *kids}
