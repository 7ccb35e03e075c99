"""The issuer's key ring: the active signing key plus the public keys still trusted.

The ring is loaded through a callback (the store provides it) and reloaded every
``refresh_interval`` seconds, so a rotation done by one worker reaches the others.
It is a ``KeySource`` for the issuer's own verifier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .contract import ALGORITHM
from .errors import Unavailable
from .keys import SigningKey, public_jwk
from .keysource import PublicKeys


@dataclass(frozen=True)
class RingKey:
    """One key of the ring. Only the active key carries its private half."""

    kid: str
    public_key: rsa.RSAPublicKey = field(repr=False)
    signing_key: SigningKey | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.signing_key is not None


@dataclass(frozen=True)
class _Snapshot:
    keys: PublicKeys
    active: SigningKey | None
    jwks: Mapping[str, Any]
    loaded_at: float


class KeyRing:
    def __init__(
        self,
        load: Callable[[], Sequence[RingKey]],
        *,
        refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._last_unknown_reload = -1e9

    def _build(self) -> _Snapshot:
        ring = list(self._load())
        active = next((k.signing_key for k in ring if k.signing_key is not None), None)
        keys = MappingProxyType({k.kid: k.public_key for k in ring})
        # The active key first: clients that take the first key still work.
        ordered = sorted(ring, key=lambda k: not k.active)
        jwks = MappingProxyType({"keys": [public_jwk(k.public_key, k.kid) for k in ordered]})
        return _Snapshot(keys=keys, active=active, jwks=jwks, loaded_at=self._clock())

    def _fresh(self) -> _Snapshot:
        snap = self._snapshot
        if snap is not None and self._clock() - snap.loaded_at < self._refresh_interval:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is None or self._clock() - snap.loaded_at >= self._refresh_interval:
                try:
                    snap = self._build()
                except Exception as exc:
                    if self._snapshot is None:
                        raise Unavailable(detail=f"cannot load signing keys: {exc}") from exc
                    snap = self._snapshot  # keep serving the last good ring
                self._snapshot = snap
            return snap

    def reload(self) -> None:
        with self._lock:
            self._snapshot = self._build()

    # KeySource
    def current(self) -> PublicKeys:
        return self._fresh().keys

    def lookup_unknown(self, kid: str) -> rsa.RSAPublicKey | None:
        # A token signed by a key another worker just created: reload at most once a second.
        now = self._clock()
        if now - self._last_unknown_reload < 1.0:
            return None
        self._last_unknown_reload = now
        self.reload()
        return self.current().get(kid)

    # Issuing
    def active_key(self) -> SigningKey:
        active = self._fresh().active
        if active is None:
            raise Unavailable(detail="no active signing key; run `flask licensechain init`")
        return active

    def jwks(self) -> Mapping[str, Any]:
        return self._fresh().jwks

    def sign(self, claims: Mapping[str, Any]) -> str:
        key = self.active_key()
        return jwt.encode(
            dict(claims), key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid}
        )
