"""Sealing of the console's secrets at rest (TOTP secrets): ONE function pair.

TEMPORARY: a shared public sealing module is being written (``flask_licensechain/core/
sealing.py`` or similar). Until it lands this uses AES-256-GCM, as the signing keys'
sealing in ``core/keys.py`` does, under a sub-key derived (HKDF-SHA-256, RFC 5869) from the
store's ``LICENSECHAIN_ENCRYPTION_KEY`` so that the console never reuses the signing keys'
key for another purpose. Switching means changing the two function bodies below.

A sealed blob is ``b"\\x01" + 12-byte nonce + ciphertext-and-tag``; the associated data
binds it to one purpose and one owner (``"totp:" + user id``), so a blob copied onto another
row does not open.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..core.keys import KeyMaterialError

_VERSION: Final = b"\x01"
_NONCE: Final = 12


def derive_console_key(encryption_key: bytes) -> bytes:
    """The console's 32-byte sealing key, derived from the store's encryption key."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"licensechain console secrets v1"
    ).derive(encryption_key)


def seal_secret(secret: bytes, context: str, key: bytes) -> bytes:
    """``secret`` sealed with ``key`` (32 bytes) and bound to ``context``."""
    nonce = os.urandom(_NONCE)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, secret, context.encode())


def unseal_secret(blob: bytes, context: str, key: bytes) -> bytes:
    """The secret of a blob from ``seal_secret``. Raises ``KeyMaterialError`` when it does
    not open (another key, another context, tampered)."""
    if not blob.startswith(_VERSION) or len(blob) < 1 + _NONCE + 16:
        raise KeyMaterialError("sealed console secret has an unknown format")
    try:
        return AESGCM(key).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], context.encode())
    except InvalidTag as exc:
        raise KeyMaterialError("cannot open a sealed console secret") from exc
