"""Sealing of the console's secrets at rest (TOTP secrets): ONE function pair, over the
store's keyring (``flask_licensechain/core/sealing.py``, AES-256-GCM, key ids, rotation).

The context binds a sealed secret to one purpose and one owner (``"totp:" + user id``), so a
blob copied onto another row does not open. The column ``lc_console_users.totp_secret`` is
registered with ``store/sealed.py`` (same context), so ``flask licensechain
rotate-encryption-key`` re-seals it and a store sealed under a missing key refuses to start.
"""

from __future__ import annotations

from ..core.sealing import Sealer


def seal_secret(secret: bytes, context: str, sealer: Sealer) -> bytes:
    """``secret`` sealed under the keyring's first key and bound to ``context`` (ASCII bytes
    for the binary column)."""
    return sealer.seal(secret, context=context.encode()).encode("ascii")


def unseal_secret(blob: bytes, context: str, sealer: Sealer) -> bytes:
    """The secret of a blob from ``seal_secret``. Raises ``KeyMaterialError`` when it does
    not open (unknown key id, another key, another context, tampered)."""
    return sealer.unseal(blob, context=context.encode())
