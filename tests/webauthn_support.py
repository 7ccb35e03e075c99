"""A software WebAuthn authenticator for the console tests: real ES256 keys and signatures,
``none`` attestation, so that py_webauthn's checks run unchanged (no stand-ins).

    authenticator = SoftAuthenticator()
    answer = authenticator.register(options_json, origin="http://localhost")
    answer = authenticator.assert_(options_json, origin="http://localhost", user_handle=b"usr_...")

Its signature counter stays 0, as synced passkeys report it (WebAuthn 6.1.1: an
authenticator may not count): the counter then proves nothing against a replay, and only
the relying party's single-use challenge does. Built from W3C Web Authentication Level 2,
6.1 (authenticator data), 6.5.1 (attested credential data), 8.7 (``none`` attestation) and
RFC 9053 (COSE EC2 keys).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

_UP = 0x01  # user present
_UV = 0x04  # user verified
_AT = 0x40  # attested credential data included


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    return json.dumps(
        {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    ).encode()


@dataclass
class SoftAuthenticator:
    """One credential (an ES256 key pair) made at the first ``register``."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def register(self, options: dict[str, Any], *, origin: str) -> dict[str, Any]:
        """The browser's answer (``PublicKeyCredential.toJSON()``) to registration
        ``options`` (the JSON the console sent)."""
        rp_hash = hashlib.sha256(options["rp"]["id"].encode()).digest()
        attested = (
            bytes(16)  # AAGUID: none
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        auth_data = rp_hash + bytes([_UP | _UV | _AT]) + struct.pack(">I", 0) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = _client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
        }

    def assert_(
        self, options: dict[str, Any], *, origin: str, user_handle: bytes | None = None
    ) -> dict[str, Any]:
        """The browser's answer to authentication ``options``, signed by this credential
        (user present and verified; signature counter 0)."""
        rp_hash = hashlib.sha256(options["rpId"].encode()).digest()
        auth_data = rp_hash + bytes([_UP | _UV]) + struct.pack(">I", 0)
        client_data = _client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": None if user_handle is None else b64url(user_handle),
            },
        }
