"""The issuer's signing keys: kept sealed in the store, loaded into the key ring, rotated.

``SigningKeys`` is the key ring's loader and the one place keys are created, imported and
rotated; the HTTP API, the CLI and start-up all go through it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .config import Settings
from .core.contract import LONGEST_TTL, clamp_leeway
from .core.errors import ConfigError
from .core.keyring import RingKey
from .core.keys import (
    KeyMaterialError,
    SigningKey,
    load_private_pem,
    seal_private_key,
    thumbprint,
    unseal_private_key,
)
from .core.sealing import Sealer
from .store import SigningKeyRecord, Store
from .store.signing_keys import ACTIVE

log = logging.getLogger("licensechain.issuer")


class IssuerConfigurationError(ConfigError, RuntimeError):
    """The issuer cannot start safely with this configuration.

    A ``ConfigError`` like every other refused setting (and a ``RuntimeError``, as before)."""


# -- signing keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationResult:
    """A rotation: the new active ``kid``, and the previous key with the time it leaves the JWKS."""

    kid: str
    previous_kid: str | None
    previous_expires_at: datetime | None


class SigningKeys:
    """Loads the key ring from the store and creates, imports and rotates signing keys.

    Public keys and the unsealed active key are cached by ``kid``: a ring reload costs one
    query and no RSA or AES work unless a key is new.
    """

    def __init__(self, store: Store, sealer: Sealer, settings: Settings) -> None:
        self._store = store
        self._sealer = sealer
        self._key_size = settings.key_size
        # A rotated-out key must verify every token it signed: the longest TTL, the verifiers'
        # leeway, and the time other workers may keep signing with it before they reload.
        self.retire_after = timedelta(
            seconds=LONGEST_TTL + clamp_leeway(settings.leeway) + settings.key_refresh_interval
        )
        self._public: dict[str, rsa.RSAPublicKey] = {}
        self._private: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigningKeys(kids={sorted(self._public)!r})"

    # KeyRing loader
    def load(self) -> list[RingKey]:
        """The trusted keys for the key ring, unsealing only the keys not seen before.

        Raises ``Unavailable`` when the store is down, ``KeyMaterialError`` when a stored key is
        unusable (its kid is not its thumbprint, or it cannot be unsealed with this key).
        """
        records = self._store.signing_keys.trusted(datetime.now(UTC))
        with self._lock:
            ring = [self._ring_key(record) for record in records]
            live = {key.kid for key in ring}
            for cache in (self._public, self._private):
                for kid in [kid for kid in cache if kid not in live]:
                    del cache[kid]
        return ring

    def _ring_key(self, record: SigningKeyRecord) -> RingKey:
        public = self._public.get(record.kid)
        if public is None:
            public = _public_key_of(record)
            self._public[record.kid] = public
        signing: SigningKey | None = None
        if record.state == ACTIVE:
            signing = self._private.get(record.kid)
            if signing is None:
                if record.sealed_private_key is None:
                    raise KeyMaterialError(detail=f"active key {record.kid} has no private key")
                private = unseal_private_key(record.sealed_private_key, record.kid, self._sealer)
                signing = SigningKey(kid=record.kid, private_key=private)
                self._private[record.kid] = signing
        return RingKey(kid=record.kid, public_key=public, signing_key=signing)

    # Lifecycle
    def load_key_file(self, signing_key_file: str | None) -> SigningKey | None:
        """The key of ``LICENSECHAIN_SIGNING_KEY_FILE``, or ``None`` when none is set.
        Raises ``KeyMaterialError`` for an unreadable file."""
        return _import_key_file(signing_key_file) if signing_key_file else None

    def create_first(self, key: SigningKey | None) -> SigningKey:
        """Store ``key`` (default: a fresh one) as the first active key, in the caller's
        unit of work. Raises ``Conflict`` when a worker racing here stored one first."""
        key = key or SigningKey.generate(self._key_size)
        self._store.signing_keys.add(self._record(key, datetime.now(UTC)))
        return key

    def retire_expired(self) -> None:
        """Drop the retired keys whose last token has expired."""
        self._store.signing_keys.retire_expired(datetime.now(UTC))

    def rotate(self, new_key: SigningKey | None = None) -> RotationResult:
        """Make ``new_key`` (default: a fresh one) the active key; the previous one is retired
        and stays trusted for ``retire_after``. Raises ``Conflict`` when another process rotated
        at the same moment, ``Unavailable`` when the store is down.
        """
        key = new_key or SigningKey.generate(self._key_size)
        now = datetime.now(UTC)
        previous = self._store.signing_keys.active()
        expires_at = now + self.retire_after
        self._store.signing_keys.rotate(self._record(key, now), now=now, old_expires_at=expires_at)
        self._store.signing_keys.retire_expired(now)
        log.info("rotated signing key: %s is active", key.kid)
        return RotationResult(
            kid=key.kid,
            previous_kid=previous.kid if previous else None,
            previous_expires_at=expires_at if previous else None,
        )

    def _record(self, key: SigningKey, now: datetime) -> SigningKeyRecord:
        return SigningKeyRecord(
            kid=key.kid,
            public_jwk=key.jwk(),
            sealed_private_key=seal_private_key(key.private_key, key.kid, self._sealer),
            state=ACTIVE,
            created_at=now,
            retired_at=None,
            expires_at=None,
        )


def _public_key_of(record: SigningKeyRecord) -> rsa.RSAPublicKey:
    jwk = record.public_jwk
    if thumbprint(jwk) != record.kid:
        raise KeyMaterialError(detail=f"stored key {record.kid}: kid is not its thumbprint")
    key = jwt.algorithms.RSAAlgorithm.from_jwk(dict(jwk))
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyMaterialError(detail=f"stored key {record.kid} is not an RSA public key")
    return key


def _import_key_file(path: str) -> SigningKey:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise IssuerConfigurationError(
            f"cannot read LICENSECHAIN_SIGNING_KEY_FILE {path}: {exc.strerror}"
        ) from exc
    return SigningKey.from_private_key(load_private_pem(pem))
