"""Sliding-window counters of the security signals: in process memory, or in Redis.

A window is a set of members, each with the time (unix seconds) it was last seen. Adding
members drops those older than the window and keeps only the ``cap`` newest: a signal needs
to know whether a count exceeds its threshold, never by how much, so ``cap`` (the threshold
plus one) bounds the memory a flood can take. Counted events (a failed verification) are
members with a unique name; distinct ones (a client address) are members named by a keyed
digest, so seeing one twice counts once.

A claim marks a window as reported: the first claimant within ``window`` seconds wins, so a
signal fires once per window per license however many workers see it.

- ``MemoryWindows``: one process's counts (the embedded default). At most ``max_keys``
  windows are kept; the least recently touched are dropped first.
- ``RedisWindows``: one sorted set per window (score: the time), shared by every worker and
  host on that Redis; one pipelined round trip per batch of adds, one per batch of claims.
  Keys expire with their window.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    import redis as redis_lib

DEFAULT_MAX_KEYS: Final = 100_000
REDIS_PREFIX: Final = "licensechain:signals:"


@dataclass(frozen=True, slots=True)
class WindowAdd:
    """Members to add to the window ``key``: ``{member: unix seconds}``; the window keeps
    ``window`` seconds and at most ``cap`` members."""

    key: str
    members: dict[str, float]
    window: float
    cap: int


class WindowStore(Protocol):
    def add_many(self, adds: Sequence[WindowAdd], now: float) -> list[int]:
        """Add each batch; the member count of each window afterwards, in order."""
        ...

    def claim_many(self, claims: Sequence[tuple[str, float]], now: float) -> list[bool]:
        """For each ``(key, window seconds)``: True for the first claim within the window."""
        ...

    def release(self, key: str) -> None:
        """Forget a claim (its report failed: let the next event try again)."""
        ...

    def salt(self) -> bytes:
        """The key of the member digests: the same for every process sharing the store."""
        ...


class MemoryWindows:
    """Windows in this process's memory. Not thread-safe: one flusher uses it at a time."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._windows: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._claims: dict[str, float] = {}
        self._max_keys = max_keys
        self._salt = secrets.token_bytes(16)

    def add_many(self, adds: Sequence[WindowAdd], now: float) -> list[int]:
        counts: list[int] = []
        for add in adds:
            members = self._windows.get(add.key)
            if members is None:
                members = self._windows[add.key] = {}
                if len(self._windows) > self._max_keys:
                    self._windows.popitem(last=False)
            else:
                self._windows.move_to_end(add.key)
            for member, seen in sorted(add.members.items(), key=lambda item: item[1]):
                members.pop(member, None)  # re-inserted: the dict stays oldest first
                members[member] = seen
            horizon = now - add.window
            while members:
                oldest = next(iter(members))
                if members[oldest] > horizon and len(members) <= add.cap:
                    break
                del members[oldest]
            counts.append(len(members))
        return counts

    def claim_many(self, claims: Sequence[tuple[str, float]], now: float) -> list[bool]:
        if len(self._claims) > self._max_keys:
            self._claims = {k: until for k, until in self._claims.items() if until > now}
        won: list[bool] = []
        for key, window in claims:
            if self._claims.get(key, 0.0) > now:
                won.append(False)
            else:
                self._claims[key] = now + window
                won.append(True)
        return won

    def release(self, key: str) -> None:
        self._claims.pop(key, None)

    def salt(self) -> bytes:
        return self._salt


class RedisWindows:
    """Windows in Redis sorted sets, shared by every process (module docstring)."""

    def __init__(self, client: redis_lib.Redis, prefix: str = REDIS_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._salt: bytes | None = None

    @classmethod
    def from_uri(cls, uri: str) -> RedisWindows:
        """A store on the Redis at ``uri`` (``redis://`` or ``rediss://``)."""
        import redis as redis_lib  # optional dependency: only with a redis:// storage URI

        return cls(redis_lib.Redis.from_url(uri, socket_timeout=1.0, socket_connect_timeout=1.0))

    def add_many(self, adds: Sequence[WindowAdd], now: float) -> list[int]:
        if not adds:
            return []
        pipe = self._client.pipeline(transaction=False)
        for add in adds:
            key = self._prefix + "w:" + add.key
            pipe.zadd(key, add.members)
            pipe.zremrangebyscore(key, "-inf", now - add.window)
            pipe.zremrangebyrank(key, 0, -(add.cap + 1))
            pipe.zcard(key)
            pipe.pexpire(key, int(add.window * 1000) + 1000)
        results = pipe.execute()
        return [int(results[index * 5 + 3]) for index in range(len(adds))]

    def claim_many(self, claims: Sequence[tuple[str, float]], now: float) -> list[bool]:
        if not claims:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key, window in claims:
            pipe.set(self._prefix + "f:" + key, "1", nx=True, px=max(1, int(window * 1000)))
        return [bool(result) for result in pipe.execute()]

    def release(self, key: str) -> None:
        self._client.delete(self._prefix + "f:" + key)

    def salt(self) -> bytes:
        if self._salt is None:
            key = self._prefix + "salt"
            self._client.set(key, secrets.token_hex(16), nx=True)
            value = self._client.get(key)
            if not isinstance(value, bytes):
                raise RuntimeError("Redis lost the signals' digest key")
            self._salt = value
        return self._salt
