"""What every denylist backend shares: the entries, the in-memory table, the protocols.

Three kinds of entry make a token void (``Revocation.kind``):

- ``jti``: that one token, until ``until`` (its ``exp`` plus the verifiers' leeway);
- ``block``: every token of the license ``ident`` (revoked or suspended), until ``until``
  or until lifted (``until`` in the past, as written by an activation);
- ``before``: every token of the license ``ident`` whose ``iat`` is earlier than
  ``not_before`` (unix seconds): the license narrowed after those tokens were issued.

Times are unix seconds (floats). An entry is kept only while a token it voids can still be
alive, so every table stays bounded: ``REVOCATION_HORIZON`` seconds after a license-level
change, no token issued before it can be accepted anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ..contract import LONGEST_TTL, MAX_LEEWAY

KIND_JTI: Final = "jti"
KIND_BLOCK: Final = "block"
KIND_BEFORE: Final = "before"
KINDS: Final = (KIND_JTI, KIND_BLOCK, KIND_BEFORE)

#: Seconds a license-level entry must outlive its change: the longest token lifetime, the
#: largest leeway a verifier may grant, and a minute for issuances in flight.
REVOCATION_HORIZON: Final = LONGEST_TTL + MAX_LEEWAY + 60
#: Seconds a source keeps a lifted or expired entry, so that a reader catching up with
#: ``changes_since`` still sees the lift. A copy left unrefreshed for half of it reloads.
LIFT_GRACE: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Revocation:
    """One denylist entry (module doc). ``until <= now`` means expired or lifted."""

    kind: str
    ident: str
    until: float
    not_before: int = 0


class RevocationSource(Protocol):
    """The store's record of every revocation, which a denylist mirrors (the source of truth).

    ``counter()`` grows with every committed change; ``changes_since(seq)`` gives every entry
    written after change ``seq`` (lifted and expired ones included) with the counter they
    bring the reader to; ``snapshot(now)`` gives the live entries and the counter they match.
    ``store_id`` names the store (stable, random), so several stores never mix in one Redis.
    Each call raises ``Unavailable`` when the store cannot answer.
    """

    @property
    def store_id(self) -> str: ...

    def counter(self) -> int: ...

    def changes_since(self, seq: int) -> tuple[int, list[Revocation]]: ...

    def snapshot(self, now: float) -> tuple[int, list[Revocation]]: ...


class Denylist(Protocol):
    """A denylist backend (``memory``, ``redis``, or a mirror of either).

    ``is_revoked`` answers for a verified token's ``jti``, ``sub`` and ``iat`` and raises
    ``Unavailable`` when it cannot tell (fail closed) unless the backend was built with
    ``fail_open=True``. ``publish`` applies entries already committed to the source of
    truth (the store) and carries them to other processes; the ``revoke_*`` helpers are
    for deployments without a store, where the backend itself is the only record.
    """

    def is_revoked(self, jti: str, sub: str, iat: int) -> bool: ...

    def publish(self, entries: Iterable[Revocation]) -> None: ...

    def revoke_jti(self, jti: str, ttl: float) -> None: ...

    def revoke_sub(self, sub: str, ttl: float) -> None: ...

    def unrevoke_sub(self, sub: str) -> None: ...

    def ping(self) -> None:
        """Raise ``Unavailable`` when the backend is unreachable or cannot be trusted
        (for Redis: it may evict keys)."""

    def close(self) -> None: ...


class RevocationTable:
    """The in-memory form of a denylist: two dicts, read without a lock.

    ``jti`` maps a token id to its ``until``; ``sub`` maps a license id to
    ``(block_until, not_before, mark_until)`` (0 where it has no block or no mark), so a
    check of a token nobody revoked costs two dict lookups and no clock read. Writers hold
    ``lock``; readers rely on single dict operations being atomic in CPython.
    """

    __slots__ = ("jti", "lock", "sub")

    def __init__(self) -> None:
        self.jti: dict[str, float] = {}
        self.sub: dict[str, tuple[float, int, float]] = {}
        self.lock = threading.Lock()

    def is_revoked(self, jti: str, sub: str, iat: int, clock: Callable[[], float]) -> bool:
        until = self.jti.get(jti)
        if until is not None and until > clock():
            return True
        entry = self.sub.get(sub)
        if entry is None:
            return False
        return iat < entry[1] or entry[0] > clock()

    def apply(self, entries: Iterable[Revocation], now: float) -> None:
        """Merge entries: a jti keeps its latest ``until``, a mark its latest time, and a
        block takes the entry's ``until`` as written (an activation lifts it)."""
        with self.lock:
            for entry in entries:
                self._apply_one(entry, now)

    def _apply_one(self, entry: Revocation, now: float) -> None:
        kind, ident = entry.kind, entry.ident
        if not ident:
            return
        if kind == KIND_JTI:
            if entry.until > now:
                self.jti[ident] = max(self.jti.get(ident, 0.0), entry.until)
            return
        block, before, mark_until = self.sub.get(ident, (0.0, 0, 0.0))
        if kind == KIND_BLOCK:
            block = entry.until if entry.until > now else 0.0
        elif kind == KIND_BEFORE and entry.until > now and entry.not_before >= before:
            before, mark_until = entry.not_before, max(entry.until, mark_until)
        else:
            return
        if block or before:
            self.sub[ident] = (block, before, mark_until)
        else:
            self.sub.pop(ident, None)

    def replace(self, entries: Iterable[Revocation], now: float) -> None:
        """Drop everything and load ``entries`` (a rebuild)."""
        fresh = RevocationTable()
        fresh.apply(entries, now)
        with self.lock:
            # Swap whole dicts: a reader sees the old table or the new one, never a mix.
            self.jti, self.sub = fresh.jti, fresh.sub

    def purge(self, now: float) -> None:
        with self.lock:
            for ident in [i for i, until in self.jti.items() if until <= now]:
                del self.jti[ident]
            for ident, (block, before, mark_until) in list(self.sub.items()):
                block = block if block > now else 0.0
                if mark_until <= now:
                    before, mark_until = 0, 0.0
                if block or before:
                    self.sub[ident] = (block, before, mark_until)
                else:
                    del self.sub[ident]

    def entries(self) -> list[Revocation]:
        """Every entry held (for tests and diagnostics)."""
        found = [Revocation(KIND_JTI, i, u) for i, u in list(self.jti.items())]
        for ident, (block, before, mark_until) in list(self.sub.items()):
            if block:
                found.append(Revocation(KIND_BLOCK, ident, block))
            if before:
                found.append(Revocation(KIND_BEFORE, ident, mark_until, before))
        return found

    def __len__(self) -> int:
        return len(self.jti) + len(self.sub)


def ttl_entry(kind: str, ident: str, ttl: float, now: float, not_before: int = 0) -> Revocation:
    """An entry that lasts ``ttl`` seconds from ``now``."""
    return Revocation(kind, ident, now + ttl, not_before)


def lifted(sub: str) -> Revocation:
    """The entry that lifts a license block (an activation)."""
    return Revocation(KIND_BLOCK, sub, 0.0)


def batches(items: Sequence[Revocation], size: int) -> Iterable[Sequence[Revocation]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
