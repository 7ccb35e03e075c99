"""RSA signing keys: generation, RFC 7638 ``kid``, JWK export, and sealing at rest.

Private keys are stored as PKCS#8 DER sealed by ``core/sealing.py`` (AES-256-GCM under the
encryption keyring); the ``kid`` is the sealing context, so a sealed blob cannot be swapped
onto another key row.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import KeyMaterialError as KeyMaterialError
from .sealing import Sealer
from .sealing import new_encryption_key_text as new_encryption_key_text
from .sealing import parse_encryption_key as parse_encryption_key

ALLOWED_KEY_SIZES = (2048, 3072, 4096)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def generate_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits not in ALLOWED_KEY_SIZES:
        raise KeyMaterialError(f"RSA key size must be one of {ALLOWED_KEY_SIZES}")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_jwk(public_key: rsa.RSAPublicKey, kid: str | None = None) -> dict[str, str]:
    numbers = public_key.public_numbers()
    jwk = {"kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}
    jwk["kid"] = kid or thumbprint(jwk)
    jwk.update(use="sig", alg="RS256")
    return jwk


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA JWK."""
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def kid_of(public_key: rsa.RSAPublicKey) -> str:
    return public_jwk(public_key)["kid"]


def load_private_pem(pem: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError("the signing key file is not a readable PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise KeyMaterialError("the signing key must be an RSA key of at least 2048 bits")
    return key


def _sealer(encryption: Sealer | bytes) -> Sealer:
    return encryption if isinstance(encryption, Sealer) else Sealer.single(encryption)


def seal_private_key(key: rsa.RSAPrivateKey, kid: str, encryption: Sealer | bytes) -> bytes:
    """``key`` as PKCS#8 DER sealed under the keyring's first key (a raw 32-byte key is
    the one-key ring), context ``kid``: ASCII bytes for the store's binary column."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _sealer(encryption).seal(der, context=kid.encode()).encode("ascii")


def unseal_private_key(blob: bytes, kid: str, encryption: Sealer | bytes) -> rsa.RSAPrivateKey:
    """The private key of a blob from ``seal_private_key`` (or the pre-keyring format).

    :raises KeyMaterialError: unknown key id, wrong key, altered blob, or not an RSA key.
    """
    try:
        der = _sealer(encryption).unseal(blob, context=kid.encode())
    except KeyMaterialError as exc:
        raise KeyMaterialError(
            f"cannot decrypt the stored signing key {kid}: {exc.detail or exc}", detail=exc.detail
        ) from exc
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyMaterialError(detail=f"stored signing key {kid} is not an RSA key")
    return key


@dataclass(frozen=True)
class SigningKey:
    """A private key with its RFC 7638 ``kid``. The repr never shows key material."""

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls, bits: int = 2048) -> SigningKey:
        return cls.from_private_key(generate_private_key(bits))

    @classmethod
    def from_private_key(cls, key: rsa.RSAPrivateKey) -> SigningKey:
        return cls(kid=kid_of(key.public_key()), private_key=key)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key, self.kid)
