"""The in-process denylist mirror against the real Redis, with real processes where
processes matter, and a TCP proxy in front of Redis to break the stream on purpose."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from conftest import free_port

from flask_licensechain.core.denylist import denylist_from_uri
from flask_licensechain.core.denylist.mirror import DenylistMirror
from flask_licensechain.core.denylist.redis import RedisDenylist, RedisKeys
from flask_licensechain.core.errors import Unavailable

pytestmark = pytest.mark.redis


KEYS = RedisKeys()


def unique(kind: str) -> str:
    return f"test-mirror-{kind}-{secrets.token_hex(6)}"


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def writer(redis_url: str) -> Iterator[RedisDenylist]:
    """Another party revoking (the server, in another process)."""
    denylist = RedisDenylist.from_uri(redis_url)
    yield denylist
    denylist.close()


def make_mirror(url: str, **kwargs: Any) -> DenylistMirror:
    mirror = denylist_from_uri(url, **kwargs)
    assert isinstance(mirror, DenylistMirror)
    return mirror


# -- in one process --------------------------------------------------------------------


def test_synced_mirror_answers_from_memory(redis_url: str, writer: RedisDenylist, raw: Any) -> None:
    mirror = make_mirror(redis_url)
    jti, sub, silent = unique("j"), unique("s"), unique("silent")
    try:
        assert mirror.wait_synced(5)
        writer.revoke_jti(jti, 60)
        writer.revoke_sub(sub, 60)
        assert eventually(lambda: mirror.is_revoked(jti, "x", 0) and mirror.is_revoked("x", sub, 0))
        writer.unrevoke_sub(sub)
        assert eventually(lambda: not mirror.is_revoked("x", sub, 0))
        # A key written without an announcement is invisible to a synced mirror:
        # proof that answers come from memory, not from a round trip.
        raw.set(KEYS.key("jti", silent), b"1", px=60_000)
        assert mirror.is_revoked(silent, "x", 0) is False
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", jti), KEYS.key("block", sub), KEYS.key("jti", silent))


def test_initial_load_picks_up_existing_entries(redis_url: str, raw: Any) -> None:
    jti, sub = unique("j"), unique("s")
    raw.set(KEYS.key("jti", jti), b"1", px=60_000)  # silent: only SCAN can find them
    raw.set(KEYS.key("block", sub), b"1", px=60_000)
    mirror = make_mirror(redis_url)
    try:
        assert mirror.wait_synced(5)
        assert jti in mirror.table.jti and sub in mirror.table.sub
        assert mirror.is_revoked(jti, "x", 0) and mirror.is_revoked("x", sub, 0)
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", jti), KEYS.key("block", sub))


def test_unsynced_mirror_asks_redis_directly(redis_url: str, raw: Any) -> None:
    mirror = make_mirror(redis_url)
    mirror.start = lambda: None  # type: ignore[method-assign]  # the listener never syncs
    jti = unique("j")
    try:
        raw.set(KEYS.key("jti", jti), b"1", px=60_000)
        assert not mirror.synced
        assert mirror.is_revoked(jti, "x", 0) is True
        assert mirror.is_revoked(unique("other"), "x", 0) is False
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", jti))


def test_entries_expire_by_their_until(redis_url: str, writer: RedisDenylist, raw: Any) -> None:
    clock_offset = [0.0]
    mirror = DenylistMirror(
        RedisDenylist.from_uri(redis_url), clock=lambda: time.time() + clock_offset[0]
    )
    jti = unique("j")
    try:
        assert mirror.wait_synced(5)
        writer.revoke_jti(jti, 30)
        assert eventually(lambda: mirror.is_revoked(jti, "x", 0))
        clock_offset[0] = 31
        assert mirror.is_revoked(jti, "x", 0) is False
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", jti))


def test_own_revocations_are_visible_at_once(redis_url: str, raw: Any) -> None:
    mirror = make_mirror(redis_url)
    jti = unique("j")
    try:
        assert mirror.wait_synced(5)
        mirror.revoke_jti(jti, 60)
        assert mirror.is_revoked(jti, "x", 0)
        assert raw.exists(KEYS.key("jti", jti))
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", jti))


def test_malformed_events_are_ignored(redis_url: str, writer: RedisDenylist, raw: Any) -> None:
    seen: list[str] = []
    mirror = DenylistMirror(RedisDenylist.from_uri(redis_url), on_event=seen.append)
    jti = unique("j")
    try:
        assert mirror.wait_synced(5)
        raw.publish(KEYS.events, b"+j missing-until-" + jti.encode())
        raw.publish(KEYS.events, b"\xff\xfe garbage")
        writer.revoke_jti(jti, 60)
        assert eventually(lambda: any(jti in e for e in seen))
        assert mirror.synced and mirror.is_revoked(jti, "x", 0)
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", jti))


# -- breaking the stream --------------------------------------------------------------


class FlakyProxy:
    """A TCP proxy to Redis on loopback that a test can cut or turn into a black hole."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self.mode = "open"  # open | closed | blackhole
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode != "open":
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stopped:
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "open":
                        peers[sock].sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def cut(self) -> None:
        self.mode = "closed"
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._conns.clear()

    def close(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[FlakyProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    flaky = FlakyProxy(port)
    yield flaky
    flaky.close()


def test_broken_stream_fails_closed_then_resyncs(
    proxy: FlakyProxy, writer: RedisDenylist, raw: Any
) -> None:
    mirror = make_mirror(proxy.url)
    missed = unique("missed")
    try:
        assert mirror.wait_synced(5)
        proxy.cut()  # Redis is gone for this process
        assert eventually(lambda: not mirror.synced)
        with pytest.raises(Unavailable):
            mirror.is_revoked(unique("j"), "x", 0)
        writer.revoke_jti(missed, 60)  # published while the mirror cannot hear it
        proxy.mode = "open"
        assert mirror.wait_synced(10)
        assert mirror.is_revoked(missed, "x", 0)  # found by the reload
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", missed))


def test_broken_stream_with_fail_open_lets_tokens_through(proxy: FlakyProxy) -> None:
    mirror = make_mirror(proxy.url, fail_open=True)
    try:
        assert mirror.wait_synced(5)
        proxy.cut()
        assert eventually(lambda: not mirror.synced)
        assert mirror.is_revoked(unique("j"), "x", 0) is False
    finally:
        mirror.close()


def test_silent_stream_stops_being_trusted(proxy: FlakyProxy) -> None:
    backend = RedisDenylist.from_uri(proxy.url)
    mirror = DenylistMirror(backend, heartbeat=0.1, max_silence=0.3)
    try:
        assert mirror.wait_synced(5)
        proxy.mode = "blackhole"  # connections stay up, nothing gets through
        assert eventually(lambda: not mirror.synced, timeout=3)
        with pytest.raises(Unavailable):
            mirror.is_revoked(unique("j"), "x", 0)
    finally:
        mirror.close()


# -- other processes --------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from flask_licensechain.core.denylist import denylist_from_uri
    mirror = denylist_from_uri(sys.argv[1])
    assert mirror.wait_synced(10)
    print("ready", flush=True)
    for line in sys.stdin:
        jti, sub = line.split()
        print(int(mirror.is_revoked(jti, sub, 0)), int(mirror.synced), flush=True)
    """
)


def test_revocation_reaches_another_process(
    redis_url: str, writer: RedisDenylist, raw: Any
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    jti, sub = unique("j"), unique("s")

    def ask(j: str, s: str) -> tuple[int, int]:
        child.stdin.write(f"{j} {s}\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        revoked, synced = child.stdout.readline().split()  # type: ignore[union-attr]
        return int(revoked), int(synced)

    try:
        assert child.stdout.readline().strip() == "ready"
        assert ask(jti, sub) == (0, 1)
        writer.revoke_jti(jti, 60)
        assert eventually(lambda: ask(jti, "x") == (1, 1))
        writer.revoke_sub(sub, 60)
        assert eventually(lambda: ask("x", sub) == (1, 1))
        writer.unrevoke_sub(sub)
        assert eventually(lambda: ask("x", sub) == (0, 1))
    finally:
        child.stdin.close()
        child.wait(10)
        raw.delete(KEYS.key("jti", jti), KEYS.key("block", sub))


def _forked_worker(mirror: DenylistMirror, jti: str, out: Any) -> None:
    parent_thread = mirror._thread
    revoked = eventually(lambda: mirror.is_revoked(jti, "x", 0))
    out.put((revoked, mirror.synced, mirror._pid == os.getpid(), parent_thread is None))


def test_a_forked_worker_starts_its_own_listener(
    redis_url: str, writer: RedisDenylist, raw: Any
) -> None:
    mirror = make_mirror(redis_url)
    jti = unique("j")
    try:
        assert mirror.wait_synced(5)  # the "master" has a running listener
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        worker = ctx.Process(target=_forked_worker, args=(mirror, jti, out))
        worker.start()
        time.sleep(0.2)
        writer.revoke_jti(jti, 60)
        result = out.get(timeout=15)
        worker.join(10)
        assert result == (True, True, True, True)
        assert mirror.is_revoked(jti, "x", 0)  # the parent's listener still works
    finally:
        mirror.close()
        raw.delete(KEYS.key("jti", jti))
