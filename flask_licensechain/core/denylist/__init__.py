"""The revocation denylist, chosen by storage URI as the ``limits`` library chooses storage.

- ``memory://``: ``MemoryDenylist``, in process memory; with a store as ``source`` it
  follows the store (a change counter read at most every ``poll_interval`` seconds).
- ``redis://``, ``rediss://``, ``redis+sentinel://``, ``redis+unix://``: a ``DenylistMirror``
  (an in-process copy kept current over pub/sub) of a ``RedisDenylist``; ``mirror=False``
  asks Redis on every check. ``redis+cluster://`` is always asked directly.

This module is the factory: it imports the backends, and they never import it. The
backends share ``base``. Fail closed: a backend that cannot answer raises ``Unavailable``
unless ``fail_open=True`` was chosen explicitly (then it logs and answers False).
"""

from __future__ import annotations

from typing import Final

from .base import (
    KIND_BEFORE,
    KIND_BLOCK,
    KIND_JTI,
    REVOCATION_HORIZON,
    Denylist,
    Revocation,
    RevocationSource,
    RevocationTable,
)
from .memory import DEFAULT_POLL_INTERVAL, MemoryDenylist

REDIS_SCHEMES: Final = ("redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")
#: Schemes whose denylist is mirrored in-process (a cluster is checked directly).
MIRRORED_SCHEMES: Final = ("redis", "rediss", "redis+sentinel", "redis+unix")


def denylist_from_uri(
    uri: str,
    *,
    fail_open: bool = False,
    mirror: bool = True,
    source: RevocationSource | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> Denylist:
    """The denylist for a storage URI (module doc).

    ``source`` is the store that records every revocation (the issuer's): the denylist
    then follows it, and a Redis one is kept complete from it. ``poll_interval`` (seconds)
    bounds how late a process sees another's revocation without Redis. Raises
    ``ValueError`` for an unknown scheme, ``RuntimeError`` when redis-py is missing.
    """
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "memory":
        return MemoryDenylist(source, poll_interval=poll_interval, fail_open=fail_open)
    if scheme not in REDIS_SCHEMES:
        raise ValueError(f"unsupported denylist storage URI scheme: {scheme!r}")
    try:  # redis-py is an optional dependency: deferred until a Redis URI is configured
        from .mirror import DenylistMirror
        from .redis import RedisDenylist
    except ImportError as exc:
        raise RuntimeError(
            "a redis:// URI needs redis-py: pip install 'flask-licensechain[redis]'"
        ) from exc
    backend = RedisDenylist.from_uri(uri, fail_open=fail_open)
    if (mirror and scheme in MIRRORED_SCHEMES) or source is not None:
        return DenylistMirror(backend, source=source, poll_interval=poll_interval)
    return backend


__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "KIND_BEFORE",
    "KIND_BLOCK",
    "KIND_JTI",
    "MIRRORED_SCHEMES",
    "REDIS_SCHEMES",
    "REVOCATION_HORIZON",
    "Denylist",
    "MemoryDenylist",
    "Revocation",
    "RevocationSource",
    "RevocationTable",
    "denylist_from_uri",
]
