"""An in-process mirror of a Redis denylist: revocation checks without a round trip.

Each process keeps the denylist in a ``RevocationTable``; a daemon thread keeps it current:
it subscribes to the announcements (waiting for the confirmation), *then* loads, so nothing
announced during the load is missed (it waits on the subscribed connection), and applies
each announcement as it comes, pinging through the subscription every ``heartbeat`` seconds.

Two ways to load, by where the truth lives:

- **With a store** (``source``, the issuer): the store is the truth and the table follows it
  exactly as ``MemoryDenylist`` does (a counter read at most every ``poll_interval``). Redis
  only makes a change reach every process in milliseconds instead of one interval. The
  thread also keeps Redis complete for the gates that have only Redis: every heartbeat it
  compares Redis's record of how far it holds this store's changes with the store's counter
  and copies what is missing (everything, when Redis lost its data). Losing Redis loses
  speed, never a revocation, and never makes a check fail.
- **Without a store** (an integrator's gate): Redis is the truth. The table is loaded from
  Redis only while Redis carries the mark of a complete denylist
  (``RedisDenylist.generation``); every heartbeat the thread checks that the mark is the one
  it loaded under. A reconnect of the subscription (redis-py re-subscribes by itself and
  the server confirms again), a silence longer than ``max_silence``, a missing or new mark:
  each means events may have been lost, so the table is rebuilt. Until then ``is_revoked``
  asks Redis directly, which raises ``Unavailable`` (fail closed) when Redis is down or
  holds no complete denylist, unless ``fail_open`` was chosen.

Fork safety: nothing runs until the first use in a process. A forked child (gunicorn
worker) forgets the parent's thread, connection and locks, and starts its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from ..errors import Unavailable
from .base import KIND_BLOCK, KIND_JTI, Revocation, RevocationSource, lifted, ttl_entry
from .memory import DEFAULT_POLL_INTERVAL, MemoryDenylist
from .redis import RedisDenylist, parse_event

if TYPE_CHECKING:
    from redis.client import PubSub

log = logging.getLogger("licensechain.denylist.mirror")

DEFAULT_HEARTBEAT: Final = 1.0
DEFAULT_MAX_SILENCE: Final = 3.0
_MAX_RESYNC_BACKOFF: Final = 2.0

_live_mirrors: weakref.WeakSet[DenylistMirror] = weakref.WeakSet()


class _StreamBroken(Exception):
    """Events may have been lost: a reconnect, a bad confirmation, a new or missing mark."""


class DenylistMirror:
    """A ``Denylist`` that answers from memory, kept current from Redis (module doc)."""

    # Per-process state, reset in a forked child (see _reset_process_state).
    _pid: int
    _thread: threading.Thread | None
    _start_lock: threading.Lock
    _stop: threading.Event
    _synced: bool
    _synced_event: threading.Event
    _last_heard: float
    _generation: str | None

    def __init__(
        self,
        backend: RedisDenylist,
        *,
        source: RevocationSource | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        heartbeat: float = DEFAULT_HEARTBEAT,
        max_silence: float = DEFAULT_MAX_SILENCE,
        on_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._source = source
        self.heartbeat = max(0.05, float(heartbeat))
        self.max_silence = max(self.heartbeat * 2, float(max_silence))
        #: called with each applied announcement (metrics, and the propagation benchmark)
        self.on_event = on_event
        self._clock = clock
        self._local = MemoryDenylist(
            source, poll_interval=poll_interval, fail_open=backend.fail_open, clock=clock
        )
        self.table = self._local.table
        self._reset_process_state()
        _live_mirrors.add(self)

    @property
    def fail_open(self) -> bool:
        return self._backend.fail_open

    @property
    def backend(self) -> RedisDenylist:
        return self._backend

    @property
    def synced(self) -> bool:
        """True while the stream from Redis is live (answers then come from memory)."""
        return self._synced and time.monotonic() - self._last_heard < self.max_silence

    # -- Denylist ----------------------------------------------------------------------

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        if self._thread is None:
            self.start()
        if self._source is not None:
            return self._local.is_revoked(jti, sub, iat)  # the store's copy, plus events
        if self._synced and time.monotonic() - self._last_heard < self.max_silence:
            return self.table.is_revoked(jti, sub, iat, self._clock)
        return self._backend.is_revoked(jti, sub, iat)  # fails closed unless fail_open

    def publish(self, entries: Iterable[Revocation]) -> None:
        """Apply committed entries here at once and announce them through Redis.

        With a store, a Redis failure is logged and left to the thread, which copies the
        store's changes into Redis once it answers again; without one it raises
        ``Unavailable`` (Redis is then the only record).
        """
        batch = list(entries)
        self._local.publish(batch)
        try:
            self._backend.publish(batch)
        except Unavailable as exc:
            if self._source is None:
                raise
            log.warning("revocation kept in the store; Redis will get it later: %s", exc)

    def revoke_jti(self, jti: str, ttl: float) -> None:
        self._write(ttl_entry(KIND_JTI, jti, ttl, self._clock()))

    def revoke_sub(self, sub: str, ttl: float) -> None:
        self._write(ttl_entry(KIND_BLOCK, sub, ttl, self._clock()))

    def unrevoke_sub(self, sub: str) -> None:
        self._write(lifted(sub))

    def ping(self) -> None:
        self._backend.ping()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.heartbeat + 2)
        self._backend.close()

    def __len__(self) -> int:
        return len(self.table)

    def _write(self, entry: Revocation) -> None:
        # The store-less helpers: Redis is the record (see RedisDenylist.revoke_jti).
        if entry.kind == KIND_JTI:
            self._backend.revoke_jti(entry.ident, entry.until - self._clock())
        elif entry.until > self._clock():
            self._backend.revoke_sub(entry.ident, entry.until - self._clock())
        else:
            self._backend.unrevoke_sub(entry.ident)
        self._local.publish([entry])  # this process sees it at once

    # -- listener lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the listener in this process (idempotent; ``is_revoked`` calls it)."""
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            thread = threading.Thread(
                target=self._run, name="licensechain-denylist-mirror", daemon=True
            )
            self._thread = thread
            thread.start()

    def wait_synced(self, timeout: float) -> bool:
        """Start if needed and wait until the stream from Redis is live (tests, warm-up)."""
        self.start()
        self._synced_event.wait(timeout)
        return self.synced

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._thread = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = False
        self._synced_event = threading.Event()
        self._last_heard = float("-inf")
        self._generation = None

    def _run(self) -> None:
        backoff = 0.05
        failures = 0
        while not self._stop.is_set():
            pubsub: PubSub | None = None
            try:
                pubsub = self._subscribe()
                self._load()
                self._last_heard = time.monotonic()
                self._synced = True
                self._synced_event.set()
                backoff, failures = 0.05, 0
                self._listen(pubsub)
            except Exception as exc:  # any failure: resync from scratch
                self._mark_unsynced()
                if self._stop.is_set():
                    break
                failures += 1
                # Once per outage at WARNING; the retries every <= 2 s at DEBUG.
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "denylist mirror lost its stream, resyncing: %s",
                    exc,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_RESYNC_BACKOFF)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: S110 - the connection is being dropped anyway
                        pass
        self._mark_unsynced()

    def _mark_unsynced(self) -> None:
        self._synced = False
        self._synced_event.clear()

    def _subscribe(self) -> PubSub:
        pubsub: PubSub = self._backend.client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(self._backend.keys.events)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                return pubsub
        raise _StreamBroken("no subscribe confirmation from Redis")

    def _load(self) -> None:
        source = self._source
        if source is not None:
            # The store is the truth: catch up on anything missed, then keep Redis complete.
            self._local.refresh(force=True)
            self._backend.sync_from(source)
            return
        generation = self._backend.generation()
        if generation is None:
            raise _StreamBroken("Redis holds no complete denylist yet (lost its data?)")
        entries = self._backend.load()
        if self._backend.generation() != generation:
            raise _StreamBroken("Redis was refilled during the load")
        self.table.replace(entries, self._clock())
        self._generation = generation
        log.info("denylist mirror loaded %d entries from Redis", len(entries))

    def _listen(self, pubsub: PubSub) -> None:
        next_beat = time.monotonic() + self.heartbeat
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=self.heartbeat / 2)
            now = time.monotonic()
            if message is not None:
                kind = message["type"]
                if kind == "subscribe":
                    # redis-py reconnected and re-subscribed: announcements were lost between.
                    raise _StreamBroken("the subscription was re-established")
                self._last_heard = now
                if kind == "message":
                    self._apply(message["data"])
            if now >= next_beat:
                pubsub.ping()
                self._beat()
                next_beat = now + self.heartbeat
            if now - self._last_heard > self.max_silence:
                raise _StreamBroken(f"no word from Redis for {self.max_silence} s")

    def _beat(self) -> None:
        if self._source is not None:
            self._backend.sync_from(self._source)  # cheap when Redis is complete
        elif self._backend.generation() != self._generation:
            raise _StreamBroken("Redis's denylist mark changed (it lost or was refilled)")

    def _apply(self, data: bytes | str) -> None:
        event = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        entry = parse_event(event)
        if entry is None:
            log.warning("denylist mirror ignored a malformed event %r", event[:200])
            return
        self._local.publish([entry])
        if self.on_event is not None:
            self.on_event(event)


def _reset_mirrors_after_fork() -> None:
    for mirror in list(_live_mirrors):
        # The parent's listener thread does not exist here, and its socket is the parent's.
        mirror._reset_process_state()


os.register_at_fork(after_in_child=_reset_mirrors_after_fork)
