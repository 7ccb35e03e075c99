"""Webhook signing secrets: made, parsed, and sealed at rest.

A secret is 32 random bytes, shown as ``whsec_<base64>`` (the Standard Webhooks format,
https://www.standardwebhooks.com/). At rest it is sealed by the issuer's ``Sealer``
(``core/sealing.py``, AES-256-GCM under the encryption keyring), bound to its endpoint
(``store.webhooks.secret_context``): ``WebhookRuntime.seal`` and ``signing_secrets``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Final

from ..core.errors import InvalidRequest

PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
#: a secret a client brings must hold 24 to 64 random bytes (Standard Webhooks)
MIN_BYTES: Final = 24
MAX_BYTES: Final = 64


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
