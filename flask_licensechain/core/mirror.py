"""An in-process mirror of the Redis denylist: revocation checks without a round trip.

Each process keeps the denylist in two dicts (``jti -> until``, ``sub -> until``).
A daemon thread keeps them current:

1. subscribe to ``EVENTS_CHANNEL`` and wait for the confirmation, *then*
2. load every entry with ``SCAN`` + ``PTTL`` (so nothing published during the
   load is missed: it is queued on the subscribed connection and applied next),
3. apply ``+j <jti> <until>``, ``+s <sub> <until>`` and ``-s <sub>`` events as they
   come, pinging through the subscription every ``heartbeat`` seconds.

The mirror answers only while it is synced and has heard from Redis within
``max_silence`` seconds. Otherwise (starting up, stream broken, reconnecting,
listener stuck) ``is_revoked`` asks Redis directly with ``EXISTS`` until the
listener has re-subscribed and reloaded; when Redis is gone that raises
``Unavailable`` (fail closed) unless ``fail_open`` was chosen.

Fork safety: nothing runs until the first use in a process. A forked child
(gunicorn worker) forgets the parent's thread, connection and locks, and starts
its own listener on first use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from .denylist import EVENTS_CHANNEL, JTI_PREFIX, SUB_PREFIX, RedisDenylist

if TYPE_CHECKING:
    from redis.client import PubSub

log = logging.getLogger("licensechain.denylist.mirror")

DEFAULT_HEARTBEAT: Final = 1.0
DEFAULT_MAX_SILENCE: Final = 3.0
_MAX_RESYNC_BACKOFF: Final = 2.0
_PURGE_EVERY: Final = 10.0
_SCAN_BATCH: Final = 1000

_live_mirrors: weakref.WeakSet[DenylistMirror] = weakref.WeakSet()


class _StreamBroken(Exception):
    """The subscription was lost (a silent reconnect, a bad confirmation)."""


class _ReconnectWatch:
    """Counts (re)connections of one pub/sub connection. redis-py re-subscribes on a
    reconnect by itself, but the events sent meanwhile are lost: that must resync."""

    def __init__(self, pubsub: PubSub, on_reconnect: Callable[[], None]) -> None:
        self.connects = 0
        self.armed = False  # set once subscribed: every later connect is a reconnect
        self._original: Callable[[Any], None] = pubsub.on_connect
        self._on_reconnect = on_reconnect

    def on_connect(self, connection: Any) -> None:
        self.connects += 1
        if self.armed:
            self._on_reconnect()
        self._original(connection)


class DenylistMirror:
    """A ``Denylist`` that answers from memory, kept current from Redis (module doc)."""

    # Per-process state, reset in a forked child (see _reset_process_state).
    _pid: int
    _thread: threading.Thread | None
    _start_lock: threading.Lock
    _write_lock: threading.Lock
    _stop: threading.Event
    _synced: bool
    _synced_event: threading.Event
    _last_heard: float

    def __init__(
        self,
        backend: RedisDenylist,
        *,
        heartbeat: float = DEFAULT_HEARTBEAT,
        max_silence: float = DEFAULT_MAX_SILENCE,
        on_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self.heartbeat = max(0.05, float(heartbeat))
        self.max_silence = max(self.heartbeat * 2, float(max_silence))
        #: called with each applied event (metrics, and the propagation benchmark)
        self.on_event = on_event
        self._clock = clock
        self._jti: dict[str, float] = {}
        self._sub: dict[str, float] = {}
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
        """True while answers come from memory (synced, and Redis heard from recently)."""
        return self._synced and time.monotonic() - self._last_heard < self.max_silence

    # -- Denylist -----------------------------------------------------------

    def is_revoked(self, jti: str, sub: str) -> bool:
        if self._thread is None:
            self.start()
        if self._synced and time.monotonic() - self._last_heard < self.max_silence:
            now = self._clock()
            until = self._jti.get(jti)
            if until is not None and until > now:
                return True
            until = self._sub.get(sub)
            return until is not None and until > now
        return self._backend.is_revoked(jti, sub)  # fails closed unless fail_open

    def revoke_jti(self, jti: str, ttl: float) -> None:
        self._backend.revoke_jti(jti, ttl)
        self._put(self._jti, jti, self._clock() + ttl)  # this process sees it at once

    def revoke_sub(self, sub: str, ttl: float) -> None:
        self._backend.revoke_sub(sub, ttl)
        self._put(self._sub, sub, self._clock() + ttl)

    def unrevoke_sub(self, sub: str) -> None:
        self._backend.unrevoke_sub(sub)
        with self._write_lock:
            self._sub.pop(sub, None)

    def ping(self) -> None:
        self._backend.ping()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.heartbeat + 2)
        self._backend.close()

    def __len__(self) -> int:
        return len(self._jti) + len(self._sub)

    # -- listener lifecycle --------------------------------------------------

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
        """Start if needed and wait until answers come from memory (tests, warm-up)."""
        self.start()
        self._synced_event.wait(timeout)
        return self.synced

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._thread = None
        self._start_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = False
        self._synced_event = threading.Event()
        self._last_heard = float("-inf")

    def _after_fork(self) -> None:
        # The parent's listener thread does not exist here, and its socket is the parent's.
        self._reset_process_state()

    def _run(self) -> None:
        backoff = 0.05
        failures = 0
        while not self._stop.is_set():
            pubsub: PubSub | None = None
            try:
                pubsub, watch = self._subscribe()
                jtis, subs = self._load()
                self._jti, self._sub = jtis, subs
                self._last_heard = time.monotonic()
                self._synced = True
                self._synced_event.set()
                log.info("denylist mirror synced (%d entries)", len(jtis) + len(subs))
                backoff, failures = 0.05, 0
                self._listen(pubsub, watch)
            except Exception as exc:  # any failure: resync from scratch
                self._mark_unsynced()
                if self._stop.is_set():
                    break
                failures += 1
                # Once per outage at WARNING; the retries every <= 2 s at DEBUG.
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "denylist mirror lost its stream, checking Redis directly until resynced: %s",
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

    def _subscribe(self) -> tuple[PubSub, _ReconnectWatch]:
        pubsub: PubSub = self._backend.client.pubsub()  # type: ignore[no-untyped-call]
        watch = _ReconnectWatch(pubsub, self._mark_unsynced)
        pubsub.on_connect = watch.on_connect  # type: ignore[method-assign]
        pubsub._licensechain_watch = watch  # type: ignore[attr-defined]  # keeps it alive
        pubsub.subscribe(EVENTS_CHANNEL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                watch.armed = True
                return pubsub, watch
        raise _StreamBroken("no subscribe confirmation from Redis")

    def _load(self) -> tuple[dict[str, float], dict[str, float]]:
        client = self._backend.client
        tables: dict[str, dict[str, float]] = {JTI_PREFIX: {}, SUB_PREFIX: {}}
        for prefix, table in tables.items():
            for batch in _batches(client.scan_iter(match=prefix + "*", count=_SCAN_BATCH)):
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.pttl(key)
                now = self._clock()
                for key, pttl in zip(batch, pipe.execute(), strict=True):
                    name = key.decode() if isinstance(key, bytes) else str(key)
                    if pttl == -1:  # no expiry (not written by us): blocks until deleted
                        table[name[len(prefix) :]] = float("inf")
                    elif pttl > 0:
                        table[name[len(prefix) :]] = now + pttl / 1000.0
        return tables[JTI_PREFIX], tables[SUB_PREFIX]

    def _listen(self, pubsub: PubSub, watch: _ReconnectWatch) -> None:
        connects = watch.connects
        next_ping = time.monotonic() + self.heartbeat
        next_purge = time.monotonic() + _PURGE_EVERY
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=self.heartbeat / 2)
            if watch.connects != connects:
                raise _StreamBroken("the pub/sub connection was re-established")
            now = time.monotonic()
            if message is not None:
                self._last_heard = now
                if message["type"] == "message":
                    self._apply(message["data"])
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + self.heartbeat
            if now >= next_purge:
                self._purge()
                next_purge = now + _PURGE_EVERY

    def _apply(self, data: bytes | str) -> None:
        event = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        kind, _, rest = event.partition(" ")
        try:
            if kind == "+j" or kind == "+s":
                ident, _, until = rest.rpartition(" ")
                self._put(self._jti if kind == "+j" else self._sub, ident, float(until))
            elif kind == "-s":
                with self._write_lock:
                    self._sub.pop(rest, None)
            else:
                return
        except ValueError:
            log.warning("denylist mirror ignored a malformed event %r", event[:200])
            return
        if self.on_event is not None:
            self.on_event(event)

    def _put(self, table: dict[str, float], ident: str, until: float) -> None:
        if ident:
            with self._write_lock:
                table[ident] = max(table.get(ident, 0.0), until)

    def _purge(self) -> None:
        now = self._clock()
        for table in (self._jti, self._sub):
            with self._write_lock:
                for ident in [i for i, until in table.items() if until <= now]:
                    del table[ident]


def _batches(keys: Iterator[Any], size: int = _SCAN_BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _reset_mirrors_after_fork() -> None:
    for mirror in list(_live_mirrors):
        mirror._after_fork()


os.register_at_fork(after_in_child=_reset_mirrors_after_fork)
