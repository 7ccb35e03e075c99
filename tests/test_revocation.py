"""Revocation kept in the store: every narrowing of a license voids the tokens issued
before it, in this process and in any other that shares the store; widening voids nothing;
the change and its revocation are one transaction; a denylist that cannot catch up with
the store fails closed; a Redis denylist is trusted only while it is complete."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from conftest import free_port
from issuer_support import Issuer, close_issuer, error_body, make_issuer

from flask_licensechain.core.denylist import (
    KIND_BEFORE,
    KIND_BLOCK,
    KIND_JTI,
    MemoryDenylist,
    Revocation,
)
from flask_licensechain.core.denylist.mirror import DenylistMirror
from flask_licensechain.core.denylist.redis import RedisDenylist
from flask_licensechain.core.errors import InvalidToken, Unavailable
from flask_licensechain.core.verifier import TokenRejected

pytest_plugins = ["issuer_fixtures"]  # the issuer fixtures


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def refuses(issuer: Issuer, token: str) -> bool:
    try:
        issuer.state.verifier.verify(token)
    except TokenRejected as refused:
        assert refused.reason == "token_revoked", refused.check
        return True
    return False


@pytest.fixture
def pair(tmp_path: Path, database_url: str) -> Iterator[tuple[Issuer, Issuer]]:
    """Two issuer apps on one store: two workers of one server, as far as the store knows."""
    first = make_issuer(tmp_path / "a", database_url)
    second = make_issuer(tmp_path / "b", database_url)
    try:
        yield first, second
    finally:
        close_issuer(first)
        close_issuer(second)


def _patch(issuer: Issuer, path: str, body: dict[str, Any]) -> Any:
    response = issuer.client.patch(f"/v1/licenses/{path}", json=body, headers=issuer.auth())
    assert response.status_code == 200, response.get_json()
    return response.get_json()


NARROWINGS: dict[str, Callable[[Issuer, str], None]] = {
    "expiry moved earlier": lambda i, lid: _patch(
        i, f"{lid}/extend", {"expiresAt": "2000-01-01T00:00:00Z"}
    ),
    "expiry moved within a token's life": lambda i, lid: _patch(
        i, f"{lid}/extend", {"expiresAt": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}
    ),
    "feature removed": lambda i, lid: _patch(i, lid, {"features": ["export"]}),
    "plan changed": lambda i, lid: _patch(i, lid, {"plan": "basic"}),
    "max devices below the bound count": lambda i, lid: _patch(i, lid, {"maxDevices": 1}),
    "hardware id newly required": lambda i, lid: _patch(i, lid, {"requireHwuid": True}),
    "device released": lambda i, lid: _release(i, lid),
    "suspended": lambda i, lid: _patch(i, f"{lid}/suspend", {}),
    "revoked": lambda i, lid: _patch(i, f"{lid}/revoke", {}),
}


def _release(issuer: Issuer, license_id: str) -> None:
    response = issuer.client.delete(
        f"/v1/licenses/{license_id}/devices/hw-1", headers=issuer.auth()
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("change", list(NARROWINGS))
def test_a_narrowing_voids_earlier_tokens_in_every_process(
    pair: tuple[Issuer, Issuer], change: str
) -> None:
    here, there = pair
    lic = here.new_license(
        here.new_app(tier="enterprise").id,  # 24 h tokens: the longest-lived
        plan="pro",
        features=["export", "reports"],
        max_devices=3,
        expires_at=datetime.now(UTC) + timedelta(days=30),
    )
    here.token_for(lic.key, hwuid="hw-1")
    token = here.token_for(lic.key, hwuid="hw-2")
    here.state.verifier.verify(token)
    there.state.verifier.verify(token)  # the other process has it cached too
    time.sleep(1.0)  # the change comes in a later second than the issuance

    NARROWINGS[change](here, lic.id)

    assert refuses(here, token)  # this process at once
    assert eventually(lambda: refuses(there, token))  # the other within its poll interval
    answer = there.introspect(token)
    assert answer["active"] is False
    # A fresh verify issues a token with the new rights, and it is accepted everywhere.
    fresh = here.verify(key=lic.key, hwuid="hw-2").get_json()
    if fresh["valid"]:
        assert fresh["license_token"] != token
        here.state.verifier.verify(fresh["license_token"])
        there.state.verifier.verify(fresh["license_token"])
    else:
        assert fresh["reason"] in {
            "license_expired",
            "license_suspended",
            "license_revoked",
            "hardware_id_mismatch",
        }


WIDENINGS: dict[str, dict[str, Any]] = {
    "expiry moved later": {"expiresAt": "2099-01-01T00:00:00Z"},
    "feature added": {"features": ["export", "reports", "audit"]},
    "more devices": {"maxDevices": 5},
    "customer details": {"issuedTo": "Someone Else", "metadata": {"seat": 4}},
}


@pytest.mark.parametrize("change", list(WIDENINGS))
def test_widening_voids_nothing(pair: tuple[Issuer, Issuer], change: str) -> None:
    here, there = pair
    lic = here.new_license(
        plan="pro", features=["export", "reports"], expires_at=datetime.now(UTC) + timedelta(days=3)
    )
    token = here.token_for(lic.key)
    time.sleep(1.0)
    _patch(here, lic.id, WIDENINGS[change])
    there.state.denylist.is_revoked("x", lic.id, 0)  # let the other process catch up
    time.sleep(0.6)
    here.state.verifier.verify(token)
    there.state.verifier.verify(token)
    assert there.introspect(token)["active"] is True


def test_a_token_issued_right_after_a_narrowing_is_valid(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    lic = issuer.new_license(features=["export", "reports"])
    old = issuer.token_for(lic.key)
    _patch(issuer, lic.id, {"features": ["export"]})
    fresh = issuer.token_for(lic.key)  # in the same second as the change, as often as not
    claims = issuer.state.verifier.verify(fresh)
    assert claims.features == frozenset({"export"})
    with pytest.raises(InvalidToken):
        issuer.state.verifier.verify(old)


def test_activation_lifts_the_block_everywhere(pair: tuple[Issuer, Issuer]) -> None:
    here, there = pair
    lic = here.new_license()
    token = here.token_for(lic.key)
    _patch(here, f"{lic.id}/suspend", {})
    assert eventually(lambda: refuses(there, token))
    _patch(here, f"{lic.id}/activate", {})
    here.state.verifier.verify(token)
    assert eventually(lambda: not refuses(there, token))


def test_revoked_token_reaches_every_process(pair: tuple[Issuer, Issuer]) -> None:
    here, there = pair
    lic = here.new_license()
    token, other = here.token_for(lic.key), here.token_for(lic.key)
    there.state.verifier.verify(token)
    response = here.post("/v1/licenses/revoke-token", {"license_token": token}, headers=here.auth())
    assert response.status_code == 200
    assert refuses(here, token)
    assert eventually(lambda: refuses(there, token))
    there.state.verifier.verify(other)  # only that token


def test_the_change_and_its_revocation_are_one_transaction(
    sqlite_issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = sqlite_issuer
    lic = issuer.new_license(features=["export", "reports"])
    token = issuer.token_for(lic.key)
    before = issuer.snapshot()

    def fails(*_: Any, **__: Any) -> int:
        raise Unavailable(detail="the revocation write failed")

    monkeypatch.setattr(issuer.store.revocations, "record", fails)
    for path, body in ((lic.id, {"features": []}), (f"{lic.id}/suspend", {})):
        response = issuer.client.patch(f"/v1/licenses/{path}", json=body, headers=issuer.auth())
        error_body(response, 503, "unavailable")
    assert issuer.snapshot() == before  # neither the change nor a half of it
    issuer.state.verifier.verify(token)


def test_store_keeps_the_latest_entry_and_the_lift() -> None:
    from flask_licensechain.store import open_store

    store = open_store("sqlite://")
    store.prepare_schema()
    revocations = store.revocations
    now = time.time()
    with store.engine.begin() as conn:
        first = revocations.record(conn, [Revocation(KIND_JTI, "j", now + 100)], now)
    with store.engine.begin() as conn:
        revocations.record(
            conn,
            [
                Revocation(KIND_JTI, "j", now + 50),  # shorter: the longer stays
                Revocation(KIND_BEFORE, "lic", now + 100, 500),
                Revocation(KIND_BLOCK, "lic", now + 100),
            ],
            now,
        )
    with store.engine.begin() as conn:
        last = revocations.record(
            conn,
            [Revocation(KIND_BEFORE, "lic", now + 90, 400), Revocation(KIND_BLOCK, "lic", now)],
            now,
        )
    assert last == first + 2 == revocations.counter()
    seq, live = revocations.snapshot(now + 1)
    assert seq == last
    assert sorted(live, key=lambda e: e.kind) == [
        Revocation(KIND_BEFORE, "lic", now + 100, 500),
        Revocation(KIND_JTI, "j", now + 100),
    ]
    seq, changes = revocations.changes_since(first)
    assert seq == last and {KIND_BEFORE, KIND_BLOCK} <= {e.kind for e in changes}
    lift = next(e for e in changes if e.kind == KIND_BLOCK)
    assert lift.until <= now  # a reader catching up sees the lift, not silence
    store.dispose()


class FlakySource:
    """A store that answers, then goes away."""

    store_id = "flaky"

    def __init__(self, entries: list[Revocation]) -> None:
        self.entries = entries
        self.up = True

    def _check(self) -> None:
        if not self.up:
            raise Unavailable(detail="store down")

    def counter(self) -> int:
        self._check()
        return 1

    def changes_since(self, seq: int) -> tuple[int, list[Revocation]]:
        self._check()
        return 1, []

    def snapshot(self, now: float) -> tuple[int, list[Revocation]]:
        self._check()
        return 1, list(self.entries)


def test_a_copy_that_cannot_catch_up_fails_closed() -> None:
    source = FlakySource([Revocation(KIND_JTI, "gone", time.time() + 60)])
    denylist = MemoryDenylist(source, poll_interval=0.01, max_staleness=0.2)
    assert denylist.is_revoked("gone", "lic", 0) is True
    source.up = False
    assert denylist.is_revoked("gone", "lic", 0) is True  # briefly: the copy is recent
    time.sleep(0.3)
    with pytest.raises(Unavailable):
        denylist.is_revoked("other", "lic", 0)
    opened = MemoryDenylist(FlakySource([]), poll_interval=0.01, max_staleness=0.0, fail_open=True)
    opened.source.up = False  # type: ignore[union-attr]
    assert opened.is_revoked("other", "lic", 0) is False


def test_a_copy_never_loaded_fails_closed() -> None:
    source = FlakySource([])
    source.up = False
    with pytest.raises(Unavailable):
        MemoryDenylist(source).is_revoked("j", "s", 0)


# -- Redis: complete or not trusted -------------------------------------------------------


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"test-rev-{secrets.token_hex(6)}:"
    yield name
    raw = redis_lib.Redis.from_url(redis_url)
    keys = list(raw.scan_iter(match=name + "*"))
    if keys:
        raw.delete(*keys)
    raw.close()


@pytest.mark.redis
def test_a_redis_denylist_without_its_mark_is_not_trusted(redis_url: str, namespace: str) -> None:
    store_side = RedisDenylist.from_uri(redis_url, namespace=namespace)
    gate_side = DenylistMirror(
        RedisDenylist.from_uri(redis_url, namespace=namespace), heartbeat=0.1
    )
    source = FlakySource([Revocation(KIND_JTI, "revoked-jti", time.time() + 60)])
    try:
        with pytest.raises(Unavailable):  # empty Redis: never "not revoked"
            gate_side.is_revoked("revoked-jti", "lic", 0)
        assert gate_side.wait_synced(0.5) is False
        assert store_side.sync_from(source) == 1
        assert gate_side.wait_synced(10)
        assert gate_side.is_revoked("revoked-jti", "lic", 0) is True
        assert gate_side.is_revoked("other", "lic", 0) is False
        assert store_side.sync_from(source) == 0  # already complete: nothing copied
    finally:
        gate_side.close()
        store_side.close()


@pytest.mark.redis
def test_a_copy_interrupted_by_data_loss_is_never_marked_complete(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RedisDenylist.from_uri(redis_url, namespace=namespace)
    raw = redis_lib.Redis.from_url(redis_url)
    source = FlakySource([Revocation(KIND_JTI, "j", time.time() + 60)])
    write = backend._write

    def lose_data_midway(entries: list[Revocation], **options: bool) -> None:
        write(entries, **options)
        keys = list(raw.scan_iter(match=namespace + "*"))
        raw.delete(*keys)  # what a restart without persistence does to this namespace

    monkeypatch.setattr(backend, "_write", lose_data_midway)
    try:
        with pytest.raises(Unavailable):
            backend.sync_from(source)
        assert backend.generation() is None
        with pytest.raises(Unavailable):
            backend.is_revoked("j", "lic", 0)
    finally:
        backend.close()
        raw.close()


@pytest.mark.redis
def test_announcements_carry_every_kind(redis_url: str, namespace: str) -> None:
    writer = RedisDenylist.from_uri(redis_url, namespace=namespace)
    writer.mark_complete()
    mirror = DenylistMirror(RedisDenylist.from_uri(redis_url, namespace=namespace))
    now = time.time()
    try:
        assert mirror.wait_synced(10)
        writer.publish(
            [
                Revocation(KIND_JTI, "j", now + 60),
                Revocation(KIND_BLOCK, "blocked", now + 60),
                Revocation(KIND_BEFORE, "narrowed", now + 60, int(now)),
            ]
        )
        assert eventually(lambda: mirror.is_revoked("j", "x", 0))
        assert eventually(lambda: mirror.is_revoked("x", "blocked", 0))
        assert eventually(lambda: mirror.is_revoked("x", "narrowed", int(now) - 1))
        assert mirror.is_revoked("x", "narrowed", int(now)) is False  # issued after the mark
        # An older mark written later never moves the line back.
        writer.publish([Revocation(KIND_BEFORE, "narrowed", now + 60, int(now) - 100)])
        assert writer.is_revoked("x", "narrowed", int(now) - 1) is True
        writer.publish([Revocation(KIND_BLOCK, "blocked", now - 1)])  # lifted
        assert eventually(lambda: not mirror.is_revoked("x", "blocked", 0))
    finally:
        mirror.close()
        writer.close()


# -- Redis that may evict keys ---------------------------------------------------------------


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[str]:
    """Our own redis-server whose maxmemory-policy evicts keys."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            "64mb",
            "--maxmemory-policy",
            "allkeys-lru",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis_lib.Redis.from_url(url)
        assert eventually(lambda: _pings(client))
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _pings(client: redis_lib.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def test_health_is_degraded_when_the_denylist_redis_may_evict(
    tmp_path: Path, evicting_redis: str
) -> None:
    from licensechain_middleware import GateConfig
    from licensechain_middleware.engine import GateEngine

    made = make_issuer(tmp_path, denylist_url=evicting_redis)
    try:
        response = made.client.get("/v1/health")
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "degraded" and "denylist" in body["failing"]
    finally:
        close_issuer(made)
    engine = GateEngine(
        GateConfig(
            issuer="https://issuer.example",
            audience="app",
            jwks={"keys": []},
            denylist_url=evicting_redis,
        )
    )
    try:
        assert engine.readiness()["denylist"] is False
    finally:
        engine.close()
