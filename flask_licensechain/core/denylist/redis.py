"""``redis://`` (and ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``,
``redis+unix://``): the denylist in Redis, one key per entry, with a change announcement.

Keys (``namespace`` defaults to ``lc:deny:``): ``j:<jti>`` and ``s:<license id>`` (a block)
hold ``1``; ``n:<license id>`` holds the "void if issued before" time. Each expires with
the last token it can void. Every write is announced on ``<namespace>events`` as
``+j <jti> <until>``, ``+s <sub> <until>``, ``-s <sub>`` or ``+n <sub> <not_before> <until>``
so in-process mirrors stay current.

Redis can lose data (a restart without persistence, eviction, ``FLUSHALL``). A Redis
denylist is trusted only while ``<namespace>{ctl}gen`` exists: whoever filled Redis with the
complete denylist sets it last. With a store behind it, ``sync_from`` copies the store's
entries in, guarded by a token key so that a Redis that restarts during the copy is never
marked complete; without a store (Redis is the only record), the ``revoke_*`` helpers mark it
complete themselves. A check against a Redis without that key raises ``Unavailable`` (fail
closed): revoked tokens must not pass because Redis forgot them.

Redis must not evict these keys: ``ping`` raises ``Unavailable`` when ``maxmemory-policy``
is anything but ``noeviction``, so health checks report it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import redis as redis_lib
from limits.storage import storage_from_string

from ..errors import Unavailable
from .base import (
    KIND_BEFORE,
    KIND_BLOCK,
    KIND_JTI,
    Revocation,
    RevocationSource,
    batches,
    lifted,
    ttl_entry,
)

if TYPE_CHECKING:
    from redis.commands.core import Script

log = logging.getLogger("licensechain.denylist")

DEFAULT_NAMESPACE: Final = "lc:deny:"
_BATCH: Final = 1000
#: Seconds a cached ``maxmemory-policy`` answer is reused by ``ping``.
_POLICY_CACHE_SECONDS: Final = 30.0

# Keeps the later "void before" time and the later expiry of an ``n:`` key.
_MAX_BEFORE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT')
end
return 1
"""
# Marks Redis complete only if the guard set before the copy survived it (no data loss).
# The recorded counter only grows, except after a whole copy (ARGV[3] = '1'): that one is
# exact even when the store went back.
_FINISH_SYNC = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'NX')
local current = tonumber(redis.call('GET', KEYS[3]) or '-1')
if ARGV[3] == '1' or tonumber(ARGV[2]) > current then redis.call('SET', KEYS[3], ARGV[2]) end
return 1
"""


class RedisKeys:
    """The key names of one denylist namespace. The control keys share a hash tag
    (``{ctl}``), so a cluster keeps them in one slot for the scripts."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.namespace = namespace
        self.prefixes = {
            KIND_JTI: namespace + "j:",
            KIND_BLOCK: namespace + "s:",
            KIND_BEFORE: namespace + "n:",
        }
        self.events = namespace + "events"
        self.generation = namespace + "{ctl}gen"

    def key(self, kind: str, ident: str) -> str:
        return self.prefixes[kind] + ident

    def synced(self, store_id: str) -> str:
        return f"{self.namespace}{{ctl}}seq:{store_id}"

    def guard(self, token: str) -> str:
        return f"{self.namespace}{{ctl}}sync:{token}"


class RedisDenylist:
    """The denylist in Redis itself: every check is one round trip (module doc)."""

    def __init__(
        self,
        client: redis_lib.Redis,
        *,
        fail_open: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
        clock: Any = time.time,
    ) -> None:
        self._redis = client
        self.fail_open = fail_open
        self.keys = RedisKeys(namespace)
        self._clock = clock
        self._max_before: Script = client.register_script(_MAX_BEFORE)
        self._finish_sync: Script = client.register_script(_FINISH_SYNC)
        self._policy_checked = float("-inf")

    @classmethod
    def from_uri(
        cls, uri: str, *, fail_open: bool = False, namespace: str = DEFAULT_NAMESPACE
    ) -> RedisDenylist:
        return cls(redis_client_from_uri(uri), fail_open=fail_open, namespace=namespace)

    @property
    def client(self) -> redis_lib.Redis:
        return self._redis

    # -- Denylist ----------------------------------------------------------------------

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        keys = self.keys
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.exists(keys.key(KIND_JTI, jti), keys.key(KIND_BLOCK, sub))
            pipe.get(keys.key(KIND_BEFORE, sub))
            pipe.exists(keys.generation)
            hits, before, complete = pipe.execute()
        except redis_lib.RedisError as exc:
            return self._cannot_tell(f"denylist unreachable: {exc}")
        if not complete:
            return self._cannot_tell("Redis holds no complete denylist (did it lose its data?)")
        return bool(hits) or (before is not None and iat < int(before))

    def _cannot_tell(self, why: str) -> bool:
        if self.fail_open:
            log.warning("denylist cannot answer, failing open: %s", why)
            return False
        raise Unavailable(detail=why)

    def publish(self, entries: Iterable[Revocation]) -> None:
        self._write(list(entries), complete=False)

    def revoke_jti(self, jti: str, ttl: float) -> None:
        self._write([ttl_entry(KIND_JTI, jti, ttl, self._clock())], complete=True)

    def revoke_sub(self, sub: str, ttl: float) -> None:
        self._write([ttl_entry(KIND_BLOCK, sub, ttl, self._clock())], complete=True)

    def unrevoke_sub(self, sub: str) -> None:
        self._write([lifted(sub)], complete=True)

    def ping(self) -> None:
        try:
            self._redis.ping()
            if time.monotonic() - self._policy_checked > _POLICY_CACHE_SECONDS:
                policy = self.eviction_policy()
                if policy not in (None, "noeviction"):
                    raise Unavailable(
                        detail=f"Redis maxmemory-policy is {policy}: it may evict revocations"
                    )
                self._policy_checked = time.monotonic()
        except redis_lib.RedisError as exc:
            raise Unavailable(detail=f"redis unreachable: {exc}") from exc

    def eviction_policy(self) -> str | None:
        """Redis's ``maxmemory-policy`` (``None`` when the server will not say)."""
        try:
            info: Any = self._redis.info("memory")
        except redis_lib.ResponseError:
            return None
        if isinstance(info, dict) and "maxmemory_policy" in info:
            return str(info["maxmemory_policy"])
        return None

    def close(self) -> None:
        self._redis.close()

    def mark_complete(self) -> None:
        """Declare this Redis the complete denylist although nothing was written yet: for a
        deployment without a store, where Redis is the only record (as the ``revoke_*``
        helpers also declare). Never call it when a store holds the revocations: a Redis
        that lost its data must stay unmarked until a store-backed process refills it."""
        try:
            self._redis.set(self.keys.generation, b"redis", nx=True)
        except redis_lib.RedisError as exc:
            raise Unavailable(detail=f"denylist write failed: {exc}") from exc

    # -- what the mirrors use -------------------------------------------------------------

    def generation(self) -> str | None:
        """The mark of a complete denylist; ``None`` when Redis holds none (lost data)."""
        value = self._redis.get(self.keys.generation)
        return value.decode() if isinstance(value, bytes) else value

    def load(self) -> list[Revocation]:
        """Every entry in Redis (``SCAN`` + ``PTTL``), for a mirror's rebuild."""
        client = self._redis
        found: list[Revocation] = []
        for kind, prefix in self.keys.prefixes.items():
            for batch in _batches(client.scan_iter(match=prefix + "*", count=_BATCH)):
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.pttl(key)
                    if kind == KIND_BEFORE:
                        pipe.get(key)
                replies = pipe.execute()
                now = self._clock()
                step = 2 if kind == KIND_BEFORE else 1
                for index, key in enumerate(batch):
                    pttl = replies[index * step]
                    name = key.decode() if isinstance(key, bytes) else str(key)
                    if pttl == -2 or pttl == 0:
                        continue  # expired meanwhile
                    # no expiry (not written by us): blocks until deleted
                    until = float("inf") if pttl == -1 else now + pttl / 1000.0
                    before = int(replies[index * step + 1] or 0) if step == 2 else 0
                    found.append(Revocation(kind, name[len(prefix) :], until, before))
        return found

    def sync_from(self, source: RevocationSource) -> int:
        """Make Redis hold every live entry of ``source`` and mark it complete.

        Copies only what Redis lacks: everything when it lost its data or never held this
        store's entries, else the changes since the counter it last recorded for this store.
        Returns the number of entries written. Raises ``redis.RedisError`` or ``Unavailable``.
        """
        keys = self.keys
        synced_key = keys.synced(source.store_id)
        generation, synced = self._redis.mget([keys.generation, synced_key])
        counter = source.counter()
        if generation is not None and synced is not None and counter == int(synced):
            return 0  # complete (the usual answer: one MGET and one counter read)
        token = secrets.token_hex(8)
        guard = keys.guard(token)
        # The guard is set before Redis's state is read again, and lives as long as a copy
        # may take: if Redis loses its data at any point after, the guard goes with it and
        # the copy is never marked complete.
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(guard, b"1", ex=600)
        pipe.mget([keys.generation, synced_key])
        _, (generation, synced) = pipe.execute()
        # A counter behind the recorded one: the store went back (restored) and reuses
        # change numbers, so only a whole copy is sure to hold its entries.
        whole = not (generation is not None and synced is not None and int(synced) <= counter)
        if not whole:
            seq, entries = source.changes_since(int(synced))
            self._write(entries, complete=False)  # announced: synced mirrors need them
        else:
            seq, entries = source.snapshot(self._clock())
            # Not announced: no mirror trusts this Redis before the mark below, and each one
            # loads everything once it appears.
            self._write(entries, complete=False, announce=False)
        new_generation = generation.decode() if isinstance(generation, bytes) else token
        finished = self._finish_sync(
            keys=[guard, keys.generation, synced_key], args=[new_generation, seq, int(whole)]
        )
        if not finished:
            raise Unavailable(detail="Redis lost its data during the denylist copy; retrying")
        if generation is None:
            log.warning("Redis held no complete denylist: copied %d entries in", len(entries))
        return len(entries)

    # -- writing ------------------------------------------------------------------------

    def _write(self, entries: list[Revocation], *, complete: bool, announce: bool = True) -> None:
        now = self._clock()
        try:
            for batch in batches(entries, _BATCH):
                pipe = self._redis.pipeline(transaction=False)
                for entry in batch:
                    self._queue(pipe, entry, now, announce)
                if complete:
                    # Without a store Redis is the only record: it is complete by definition.
                    pipe.set(self.keys.generation, b"redis", nx=True)
                pipe.execute()
        except redis_lib.RedisError as exc:
            raise Unavailable(detail=f"denylist write failed: {exc}") from exc

    def _queue(self, pipe: Any, entry: Revocation, now: float, announce: bool) -> None:
        key = self.keys.key(entry.kind, entry.ident)
        ttl_ms = int((entry.until - now) * 1000)
        if entry.kind == KIND_BLOCK and ttl_ms <= 0:
            pipe.delete(key)
            if announce:
                pipe.publish(self.keys.events, f"-s {entry.ident}")
            return
        if ttl_ms <= 0 or not entry.ident:
            return
        if entry.kind == KIND_JTI:
            # NX then GT keeps the longer of two expiries when a token is revoked twice.
            pipe.set(key, b"1", px=ttl_ms, nx=True)
            pipe.pexpire(key, ttl_ms, gt=True)
            event = f"+j {entry.ident} {entry.until:.3f}"
        elif entry.kind == KIND_BLOCK:
            pipe.set(key, b"1", px=ttl_ms)
            event = f"+s {entry.ident} {entry.until:.3f}"
        else:
            self._max_before(keys=[key], args=[entry.not_before, ttl_ms], client=pipe)
            event = f"+n {entry.ident} {entry.not_before} {entry.until:.3f}"
        if announce:
            pipe.publish(self.keys.events, event)


def parse_event(event: str) -> Revocation | None:
    """The entry an announcement carries; ``None`` for anything malformed."""
    kind, _, rest = event.partition(" ")
    try:
        if kind == "+j" or kind == "+s":
            ident, _, until = rest.rpartition(" ")
            return Revocation(KIND_JTI if kind == "+j" else KIND_BLOCK, ident, float(until))
        if kind == "-s":
            return lifted(rest) if rest else None
        if kind == "+n":
            head, _, until = rest.rpartition(" ")
            ident, _, before = head.rpartition(" ")
            return Revocation(KIND_BEFORE, ident, float(until), int(before))
    except ValueError:
        return None
    return None


def redis_client_from_uri(uri: str) -> redis_lib.Redis:
    """A redis-py client for any URI the ``limits`` library accepts for Redis.

    ``limits`` already parses the sentinel and cluster URI forms; we reuse its storage
    only to get at the configured client.
    """
    storage: Any = storage_from_string(
        uri, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
    )
    client: redis_lib.Redis = storage.storage
    return client


def _batches(keys: Iterator[Any], size: int = _BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
