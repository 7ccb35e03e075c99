"""Secrets sealed at rest under a keyring of AES-256-GCM keys: the one place that seals.

Every secret the store keeps encrypted (signing keys; webhook signing secrets; TOTP
secrets) goes through a ``Sealer``. New seals use the first key of the ring; a sealed value
names the id of the key that sealed it, so unsealing finds its key and a ring can be rotated
(``flask licensechain rotate-encryption-key`` re-seals every value under the first key).

Configuration: ``LICENSECHAIN_ENCRYPTION_KEYS="k2:<key>,k1:<key>"`` (first one seals), or
the one-key form ``LICENSECHAIN_ENCRYPTION_KEY=<key>``, which is the ring ``default:<key>``.
A key is 32 random bytes, base64url (or hex) encoded (``new_encryption_key_text()``).

Format of a sealed value (text, ASCII)::

    lcs1.<key id>.<base64url(nonce (12 bytes) || AES-256-GCM ciphertext and tag)>

The associated data binds the value to its key id and to the caller's ``context`` (NIST SP
800-38D, AES-GCM with a 96-bit random nonce): ``b"lcs1\\0" + key_id + b"\\0" + context``.
A caller picks a context that names where the value lives, e.g. ``b"lc_webhooks.secret:" +
endpoint_id``, so a sealed value copied onto another row or column does not unseal there.
Signing keys use their ``kid`` as context (the context of the format before keyrings).

Values sealed before keyrings existed (bytes ``0x01 || nonce || ciphertext``, associated
data the context) are still read, as sealed by the key with id ``default``
(``LEGACY_KEY_ID``); rotation re-seals them in the format above.

Usage::

    sealer = Sealer.from_settings(keys=[("k2", key2), ("k1", key1)])
    text = sealer.seal(b"whsec_...", context=b"lc_webhooks.secret:wh_123")
    secret = sealer.unseal(text, context=b"lc_webhooks.secret:wh_123")

Errors: ``KeyMaterialError`` (HTTP 500, code ``key_error``) for a value that is malformed or
does not authenticate, ``UnknownSealingKey`` (a ``KeyMaterialError``) for a key id the ring
does not hold; ``ConfigError`` for a bad key list.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, KeyMaterialError

#: Prefix of the current sealed format.
FORMAT: Final = "lcs1"
#: The id of the one key of ``LICENSECHAIN_ENCRYPTION_KEY``, and of values sealed before
#: keyrings existed.
LEGACY_KEY_ID: Final = "default"
_LEGACY_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_KEY_BYTES: Final = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class UnknownSealingKey(KeyMaterialError):
    """A sealed value names a key id that the configured ring does not hold."""

    description = "A sealed secret needs an encryption key that is not configured."


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_encryption_key(value: str | bytes) -> bytes:
    """A 32-byte AES-256 key from base64url/base64/hex text (or raw 32 bytes).

    :raises KeyMaterialError: anything else.
    """
    if isinstance(value, bytes) and len(value) == _KEY_BYTES:
        return value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = text.strip()
    candidates: list[bytes] = []
    try:
        candidates.append(bytes.fromhex(text))
    except ValueError:
        pass
    try:
        candidates.append(_b64url_decode(text.replace("+", "-").replace("/", "_").rstrip("=")))
    except (ValueError, TypeError):
        pass
    for raw in candidates:
        if len(raw) == _KEY_BYTES:
            return raw
    raise KeyMaterialError("LICENSECHAIN_ENCRYPTION_KEY must be 32 bytes, base64url or hex encoded")


def new_encryption_key_text() -> str:
    """A fresh random key as base64url text (32 bytes from ``os.urandom``)."""
    return _b64url(os.urandom(_KEY_BYTES))


def check_key_id(key_id: str, setting: str = "LICENSECHAIN_ENCRYPTION_KEYS") -> str:
    """``key_id`` if it is 1 to 32 of ``A-Z a-z 0-9 _ -``; ``ConfigError`` otherwise."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise ConfigError(
            f"{setting}: a key id is 1 to 32 letters, digits, '_' or '-', got {key_id!r}"
        )
    return key_id


def parse_key_list(
    value: str | Mapping[str, str | bytes] | Iterable[str | Sequence[str | bytes]],
    setting: str = "LICENSECHAIN_ENCRYPTION_KEYS",
) -> tuple[tuple[str, bytes], ...]:
    """The ``(key id, 32-byte key)`` pairs of a key list, first one sealing.

    Accepted shapes: ``"k2:<key>,k1:<key>"`` (commas or whitespace between entries), a list
    of ``"id:key"`` strings or ``(id, key)`` pairs, or a mapping (in its order).

    :raises ConfigError: an empty list, a malformed entry or key, a repeated id.
    """
    entries: list[tuple[str, str | bytes]] = []
    if isinstance(value, str):
        items: list[str | Sequence[str | bytes]] = [
            part for part in re.split(r"[,\s]+", value) if part
        ]
    elif isinstance(value, Mapping):
        items = [(k, v) for k, v in value.items()]
    else:
        try:
            items = list(value)
        except TypeError:
            raise ConfigError(f"{setting} must be a list of id:key entries") from None
    for item in items:
        if isinstance(item, str):
            key_id, sep, key_text = item.partition(":")
            if not sep:
                raise ConfigError(f"{setting}: each entry is <id>:<key>, got one without ':'")
            entries.append((key_id, key_text))
        elif isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str):
            second = item[1]
            if not isinstance(second, str | bytes):
                raise ConfigError(f"{setting}: each entry is <id>:<key> or an (id, key) pair")
            entries.append((item[0], second))
        else:
            raise ConfigError(f"{setting}: each entry is <id>:<key> or an (id, key) pair")
    if not entries:
        raise ConfigError(f"{setting} lists no key")
    parsed: list[tuple[str, bytes]] = []
    for key_id, key_material in entries:
        check_key_id(key_id, setting)
        if any(key_id == seen for seen, _ in parsed):
            raise ConfigError(f"{setting}: key id {key_id!r} is listed twice")
        try:
            parsed.append((key_id, parse_encryption_key(key_material)))
        except KeyMaterialError:
            raise ConfigError(
                f"{setting}: the key of id {key_id!r} must be 32 bytes, base64url or hex encoded"
            ) from None
    return tuple(parsed)


def sealed_key_id(value: str | bytes) -> str:
    """The id of the key that sealed ``value`` (``LEGACY_KEY_ID`` for the pre-keyring format).

    :raises KeyMaterialError: ``value`` is not a sealed value.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if raw.startswith(_LEGACY_VERSION):
            return LEGACY_KEY_ID
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyMaterialError(detail="a sealed value has an unknown format") from None
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != FORMAT or not _KEY_ID.fullmatch(parts[1]):
        raise KeyMaterialError(detail="a sealed value has an unknown format")
    return parts[1]


class Sealer:
    """AES-256-GCM under a ring of keys by id: the first seals, any unseals its own values.

    Thread-safe and immutable. ``repr`` shows the key ids, never the keys.
    """

    __slots__ = ("_keys", "primary_key_id")

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """``keys``: ``(id, 32-byte key)`` pairs, the sealing key first.

        :raises ConfigError: no key, a bad id, a key that is not 32 bytes, a repeated id.
        """
        if not keys:
            raise ConfigError("an encryption keyring needs at least one key")
        ring: dict[str, AESGCM] = {}
        for key_id, key in keys:
            check_key_id(key_id)
            if key_id in ring:
                raise ConfigError(f"encryption key id {key_id!r} is listed twice")
            if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
                raise ConfigError(f"encryption key {key_id!r} must be 32 bytes")
            ring[key_id] = AESGCM(key)
        self._keys = ring
        #: the id of the key that new seals use
        self.primary_key_id = keys[0][0]

    @classmethod
    def single(cls, key: bytes) -> Sealer:
        """The ring of the one-key form: ``key`` under the id ``default``."""
        return cls([(LEGACY_KEY_ID, key)])

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id of the ring, the sealing key first."""
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"Sealer(key_ids={list(self._keys)!r})"

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        """``plaintext`` sealed under the first key, bound to ``context``: ASCII text
        ``lcs1.<key id>.<base64url>``, 41 characters plus the key id plus 4/3 of the
        plaintext length."""
        key_id = self.primary_key_id
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[key_id].encrypt(nonce, plaintext, _aad(key_id, context))
        return f"{FORMAT}.{key_id}.{_b64url(nonce + sealed)}"

    def unseal(self, sealed: str | bytes, *, context: bytes) -> bytes:
        """The plaintext of a value sealed by ``seal`` (or the pre-keyring format) under
        ``context``.

        :raises UnknownSealingKey: its key id is not in the ring.
        :raises KeyMaterialError: malformed, or it does not authenticate (another key under
            the same id, another context, a changed byte).
        """
        key_id = sealed_key_id(sealed)
        aead = self._keys.get(key_id)
        if aead is None:
            raise UnknownSealingKey(
                detail=f"a sealed value needs encryption key id {key_id!r}, which is not "
                f"configured (configured: {', '.join(self._keys)})"
            )
        if isinstance(sealed, bytes | bytearray | memoryview) and bytes(sealed).startswith(
            _LEGACY_VERSION
        ):
            raw, aad = bytes(sealed)[1:], context
        else:
            text = sealed.decode("ascii") if isinstance(sealed, bytes) else str(sealed)
            try:
                raw = _b64url_decode(text.split(".")[2])
            except ValueError:
                raise KeyMaterialError(detail="a sealed value is not valid base64url") from None
            aad = _aad(key_id, context)
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise KeyMaterialError(detail="a sealed value is truncated")
        try:
            return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise KeyMaterialError(
                detail=f"a sealed value does not decrypt under encryption key {key_id!r}: "
                "wrong LICENSECHAIN_ENCRYPTION_KEY(S) for that id, or the value was altered "
                "or moved"
            ) from None

    def encrypt_blob(self, plaintext: bytes, *, context: bytes) -> tuple[str, bytes]:
        """For large binary payloads (backups): ``(key id, nonce || ciphertext and tag)``
        under the first key, associated data as in ``seal``. The caller keeps the key id.
        ``plaintext`` is at most 2**31 - 1 bytes (``cryptography``'s limit per call)."""
        key_id = self.primary_key_id
        nonce = os.urandom(_NONCE_BYTES)
        return key_id, nonce + self._keys[key_id].encrypt(nonce, plaintext, _aad(key_id, context))

    def decrypt_blob(self, key_id: str, blob: bytes, *, context: bytes) -> bytes:
        """The plaintext of ``encrypt_blob``'s output.

        :raises UnknownSealingKey: ``key_id`` is not in the ring.
        :raises KeyMaterialError: it does not authenticate.
        """
        aead = self._keys.get(key_id)
        if aead is None:
            raise UnknownSealingKey(
                detail=f"encryption key id {key_id!r} is not configured "
                f"(configured: {', '.join(self._keys)})"
            )
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise KeyMaterialError(detail="an encrypted payload is truncated")
        try:
            return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(key_id, context))
        except InvalidTag:
            raise KeyMaterialError(
                detail=f"an encrypted payload does not decrypt under encryption key {key_id!r}: "
                "wrong key for that id, or the data or its header was altered"
            ) from None

    def needs_reseal(self, sealed: str | bytes) -> bool:
        """Whether ``sealed`` is in the old format or under a key other than the first."""
        if isinstance(sealed, bytes | bytearray | memoryview) and bytes(sealed).startswith(
            _LEGACY_VERSION
        ):
            return True
        return sealed_key_id(sealed) != self.primary_key_id


def _aad(key_id: str, context: bytes) -> bytes:
    return FORMAT.encode() + b"\0" + key_id.encode("ascii") + b"\0" + context


__all__ = [
    "FORMAT",
    "LEGACY_KEY_ID",
    "KeyMaterialError",
    "Sealer",
    "UnknownSealingKey",
    "check_key_id",
    "new_encryption_key_text",
    "parse_encryption_key",
    "parse_key_list",
    "sealed_key_id",
]
