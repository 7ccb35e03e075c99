"""RSA signing keys: generation, RFC 7638 ``kid``, JWK export, and sealing at rest.

Private keys are stored as PKCS#8 DER sealed with AES-256-GCM (``cryptography``'s
AESGCM); the ``kid`` is bound as associated data so a sealed blob cannot be
swapped onto another key row.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import LicenseChainError

ALLOWED_KEY_SIZES = (2048, 3072, 4096)
_NONCE_BYTES = 12
_SEAL_VERSION = b"\x01"


class KeyMaterialError(LicenseChainError):
    code = "key_error"
    description = "Signing key material is invalid."


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


def parse_encryption_key(value: str | bytes) -> bytes:
    """A 32-byte AES key from base64url/base64/hex text (or raw 32 bytes)."""
    if isinstance(value, bytes) and len(value) == 32:
        return value
    text = value.decode("ascii") if isinstance(value, bytes) else value
    text = text.strip()
    candidates: list[bytes] = []
    try:
        candidates.append(bytes.fromhex(text))
    except ValueError:
        pass
    try:
        candidates.append(b64url_decode(text.replace("+", "-").replace("/", "_").rstrip("=")))
    except (ValueError, TypeError):
        pass
    for raw in candidates:
        if len(raw) == 32:
            return raw
    raise KeyMaterialError("LICENSECHAIN_ENCRYPTION_KEY must be 32 bytes, base64url or hex encoded")


def new_encryption_key_text() -> str:
    return b64url(os.urandom(32))


def seal_private_key(key: rsa.RSAPrivateKey, kid: str, encryption_key: bytes) -> bytes:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    nonce = os.urandom(_NONCE_BYTES)
    return _SEAL_VERSION + nonce + AESGCM(encryption_key).encrypt(nonce, der, kid.encode())


def unseal_private_key(blob: bytes, kid: str, encryption_key: bytes) -> rsa.RSAPrivateKey:
    if not blob.startswith(_SEAL_VERSION) or len(blob) < 1 + _NONCE_BYTES + 16:
        raise KeyMaterialError("stored signing key has an unknown format")
    nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        der = AESGCM(encryption_key).decrypt(nonce, sealed, kid.encode())
    except InvalidTag as exc:
        raise KeyMaterialError(
            "cannot decrypt the stored signing key: wrong LICENSECHAIN_ENCRYPTION_KEY?"
        ) from exc
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
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
