"""Webhook signing secrets: made, parsed, and sealed at rest.

A secret is 32 random bytes, shown as ``whsec_<base64>`` (the Standard Webhooks format,
https://www.standardwebhooks.com/). At rest it is sealed with AES-256-GCM under the
issuer's encryption key (``LICENSECHAIN_ENCRYPTION_KEY``, the key that seals the signing
keys), with the endpoint id as associated data so that a sealed secret cannot be moved to
another endpoint. ``seal``/``unseal`` are the one place this happens (to move onto the
project's sealing module once it exists).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core.errors import InvalidRequest
from ..core.keys import KeyMaterialError

PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
#: a secret a client brings must hold 24 to 64 random bytes (Standard Webhooks)
MIN_BYTES: Final = 24
MAX_BYTES: Final = 64
_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12
_AAD_PREFIX: Final = b"licensechain.webhook_secret:"


def new_secret() -> bytes:
    """32 random bytes from the OS CSPRNG."""
    return secrets.token_bytes(SECRET_BYTES)


def show(secret: bytes) -> str:
    """``whsec_<base64>``, the form receivers and the ``standardwebhooks`` library take."""
    return PREFIX + base64.b64encode(secret).decode("ascii")


def parse(text: str, name: str = "secret") -> bytes:
    """The bytes of a ``whsec_<base64>`` secret of 24 to 64 bytes; ``InvalidRequest``
    (400) for anything else."""
    if not text.startswith(PREFIX):
        raise InvalidRequest(f"'{name}' must look like whsec_<base64>.")
    try:
        raw = base64.b64decode(text[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{name}' must look like whsec_<base64>.") from None
    if not MIN_BYTES <= len(raw) <= MAX_BYTES:
        raise InvalidRequest(f"'{name}' must hold {MIN_BYTES} to {MAX_BYTES} bytes.")
    return raw


def seal(secret: bytes, endpoint_id: str, key: bytes) -> bytes:
    """``secret`` sealed with AES-256-GCM under ``key``, bound to ``endpoint_id``."""
    nonce = os.urandom(_NONCE_BYTES)
    aad = _AAD_PREFIX + endpoint_id.encode()
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, secret, aad)


def unseal(blob: bytes, endpoint_id: str, key: bytes) -> bytes:
    """The secret sealed in ``blob``; ``KeyMaterialError`` when it was sealed under another
    key or for another endpoint, or is damaged."""
    if not blob.startswith(_VERSION) or len(blob) <= 1 + _NONCE_BYTES:
        raise KeyMaterialError(detail=f"webhook {endpoint_id}: sealed secret is malformed")
    nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, sealed, _AAD_PREFIX + endpoint_id.encode())
    except InvalidTag:
        raise KeyMaterialError(detail=f"webhook {endpoint_id}: cannot unseal its secret") from None
