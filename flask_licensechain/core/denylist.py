"""The revocation denylist: revoked token ids (``jti``) and license ids (``sub``).

Chosen by URI as the ``limits`` library does: ``memory://`` (one process) or
``redis://``, ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``.
Entries expire with the tokens they block, so the store stays bounded.

Fail closed: when a store cannot answer, ``is_revoked`` raises ``Unavailable``
unless ``fail_open=True`` was chosen explicitly (then it logs and answers False).

``denylist_from_uri`` wraps a Redis store in ``mirror.DenylistMirror`` by default:
an in-process copy kept current over pub/sub, so a check costs no round trip.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from .errors import Unavailable

if TYPE_CHECKING:
    import redis

log = logging.getLogger("licensechain.denylist")

#: Redis key prefixes and the pub/sub channel that announces every change.
JTI_PREFIX = "lc:deny:j:"
SUB_PREFIX = "lc:deny:s:"
EVENTS_CHANNEL = "lc:deny:events"

REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")


class Denylist(Protocol):
    def revoke_jti(self, jti: str, ttl: float) -> None: ...

    def revoke_sub(self, sub: str, ttl: float) -> None: ...

    def unrevoke_sub(self, sub: str) -> None: ...

    def is_revoked(self, jti: str, sub: str) -> bool:
        """True when either id is denylisted; raises ``Unavailable`` when it cannot tell."""

    def ping(self) -> None:
        """Raise ``Unavailable`` when the store is unreachable."""

    def close(self) -> None: ...


class MemoryDenylist:
    """In-process denylist: one dict of expiry times per kind."""

    _PURGE_EVERY = 1024

    def __init__(self, clock: Any = time.time) -> None:
        self._jti: dict[str, float] = {}
        self._sub: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self._writes = 0

    def revoke_jti(self, jti: str, ttl: float) -> None:
        self._put(self._jti, jti, ttl)

    def revoke_sub(self, sub: str, ttl: float) -> None:
        self._put(self._sub, sub, ttl)

    def unrevoke_sub(self, sub: str) -> None:
        with self._lock:
            self._sub.pop(sub, None)

    def is_revoked(self, jti: str, sub: str) -> bool:
        now = self._clock()
        until = self._jti.get(jti)
        if until is not None and until > now:
            return True
        until = self._sub.get(sub)
        return until is not None and until > now

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._jti) + len(self._sub)

    def _put(self, table: dict[str, float], key: str, ttl: float) -> None:
        if ttl <= 0:
            return
        now = self._clock()
        with self._lock:
            table[key] = max(table.get(key, 0.0), now + ttl)
            self._writes += 1
            if self._writes % self._PURGE_EVERY == 0:
                for t in (self._jti, self._sub):
                    for k in [k for k, until in t.items() if until <= now]:
                        del t[k]


class RedisDenylist:
    """Denylist in Redis: one key per entry with a TTL, plus a change announcement.

    Every write also publishes ``+j <jti> <until>``, ``+s <sub> <until>`` or
    ``-s <sub>`` on ``EVENTS_CHANNEL`` so in-process mirrors stay current.
    """

    def __init__(self, client: redis.Redis, *, fail_open: bool = False) -> None:
        self._redis = client
        self.fail_open = fail_open

    @classmethod
    def from_uri(cls, uri: str, *, fail_open: bool = False) -> RedisDenylist:
        return cls(redis_client_from_uri(uri), fail_open=fail_open)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    def revoke_jti(self, jti: str, ttl: float) -> None:
        self._write(JTI_PREFIX + jti, ttl, f"+j {jti} {time.time() + ttl:.3f}")

    def revoke_sub(self, sub: str, ttl: float) -> None:
        self._write(SUB_PREFIX + sub, ttl, f"+s {sub} {time.time() + ttl:.3f}")

    def unrevoke_sub(self, sub: str) -> None:
        import redis as redis_lib

        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(SUB_PREFIX + sub)
            pipe.publish(EVENTS_CHANNEL, f"-s {sub}")
            pipe.execute()
        except redis_lib.RedisError as exc:
            raise Unavailable(detail=f"denylist write failed: {exc}") from exc

    def is_revoked(self, jti: str, sub: str) -> bool:
        import redis as redis_lib

        try:
            return bool(self._redis.exists(JTI_PREFIX + jti, SUB_PREFIX + sub))
        except redis_lib.RedisError as exc:
            if self.fail_open:
                log.warning("denylist unreachable, failing open: %s", exc)
                return False
            raise Unavailable(detail=f"denylist unreachable: {exc}") from exc

    def ping(self) -> None:
        import redis as redis_lib

        try:
            self._redis.ping()
        except redis_lib.RedisError as exc:
            raise Unavailable(detail=f"redis unreachable: {exc}") from exc

    def close(self) -> None:
        self._redis.close()

    def _write(self, key: str, ttl: float, event: str) -> None:
        import redis as redis_lib

        if ttl <= 0:
            return
        try:
            pipe = self._redis.pipeline(transaction=True)
            # GT keeps the longer of two TTLs when an entry is written twice.
            pipe.set(key, b"1", px=max(1, int(ttl * 1000)), nx=True)
            pipe.pexpire(key, max(1, int(ttl * 1000)), gt=True)
            pipe.publish(EVENTS_CHANNEL, event)
            pipe.execute()
        except redis_lib.RedisError as exc:
            raise Unavailable(detail=f"denylist write failed: {exc}") from exc


def redis_client_from_uri(uri: str) -> redis.Redis:
    """A redis-py client for any URI the ``limits`` library accepts for Redis.

    ``limits`` already parses the sentinel and cluster URI forms; we reuse its
    storage only to get at the configured client.
    """
    try:
        from limits.storage import storage_from_string
    except ImportError as exc:  # pragma: no cover - limits is a hard dependency
        raise RuntimeError("the limits library is required") from exc
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "a redis:// URI needs redis-py: pip install 'flask-licensechain[redis]'"
        ) from exc
    storage: Any = storage_from_string(
        uri, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
    )
    client: redis.Redis = storage.storage
    return client


#: Schemes whose denylist is mirrored in-process (a cluster is checked directly).
MIRRORED_SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+unix")


def denylist_from_uri(uri: str, *, fail_open: bool = False, mirror: bool = True) -> Denylist:
    """The denylist for a storage URI.

    For Redis (except cluster) and ``mirror=True`` (the default) this is a
    ``DenylistMirror``: an in-process copy kept current over pub/sub, so checks
    cost no round trip; ``mirror=False`` asks Redis on every check.
    """
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "memory":
        return MemoryDenylist()
    if scheme in REDIS_SCHEMES:
        backend = RedisDenylist.from_uri(uri, fail_open=fail_open)
        if mirror and scheme in MIRRORED_SCHEMES:
            from .mirror import DenylistMirror

            return DenylistMirror(backend)
        return backend
    raise ValueError(f"unsupported denylist storage URI scheme: {scheme!r}")
