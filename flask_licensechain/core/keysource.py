"""Where a verifier finds public keys: a fixed JWKS (file or dict) or the issuer's key ring.

A key source answers ``current()`` with an immutable ``kid -> public key``
mapping. ``current()`` is on the hot path, so it must be a cheap attribute read
when nothing is due; sources that refresh do so there, when stale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .contract import MAX_KID_LENGTH
from .errors import LicenseChainError

PublicKeys = Mapping[str, rsa.RSAPublicKey]

EMPTY_KEYS: PublicKeys = MappingProxyType({})


class KeySource(Protocol):
    def current(self) -> PublicKeys:
        """The keys trusted now; raises ``Unavailable`` when no trustworthy set is known."""

    def lookup_unknown(self, kid: str) -> rsa.RSAPublicKey | None:
        """Called when ``kid`` is not in ``current()``: may refetch, at most as often as allowed."""


class JWKSError(LicenseChainError):
    code = "invalid_jwks"
    description = "The JWKS document is invalid."


def parse_jwks(document: Any) -> PublicKeys:
    """RSA signature keys of a JWKS document by ``kid``; other keys are skipped.

    Keys without a ``kid``, with an over-long one, marked for another ``use`` or
    ``alg``, shorter than 2048 bits, or sharing their ``kid`` with a different key
    are ignored rather than trusted.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JWKSError(detail="JWKS document has no 'keys' list")
    keys: dict[str, rsa.RSAPublicKey] = {}
    ambiguous: set[str] = set()
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
            continue
        try:
            key = jwt.algorithms.RSAAlgorithm.from_jwk(dict(jwk))
        except (jwt.InvalidKeyError, ValueError, KeyError, TypeError):
            continue
        if isinstance(key, rsa.RSAPrivateKey):
            key = key.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
            if kid in keys and keys[kid] != key:
                ambiguous.add(kid)  # one kid, two keys: trust neither
            keys[kid] = key
    for kid in ambiguous:
        del keys[kid]
    return MappingProxyType(keys)


class StaticKeySource:
    """A fixed key set: a JWKS dict, or a JWKS file read once (air-gapped installs)."""

    def __init__(self, jwks: Mapping[str, Any] | str | os.PathLike[str]) -> None:
        if isinstance(jwks, (str, os.PathLike)):
            try:
                jwks = json.loads(Path(jwks).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise JWKSError(detail=f"cannot read JWKS file {jwks}: {exc}") from exc
        self._keys = parse_jwks(jwks)

    def current(self) -> PublicKeys:
        return self._keys

    def lookup_unknown(self, kid: str) -> rsa.RSAPublicKey | None:
        return None
