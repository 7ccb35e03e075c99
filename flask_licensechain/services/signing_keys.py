"""Signing-key rotation (``signing_key.rotate``)."""

from __future__ import annotations

from ..serialize import iso
from ..signing import RotationResult
from ..state import IssuerState
from ..store import Actor, Change


def rotate_signing_key(state: IssuerState, actor: Actor) -> RotationResult:
    """Make a new active signing key; the old one stays in the JWKS until its last token
    expires (``SigningKeys.retire_after``). This worker signs with the new key once the unit
    has committed; the others within ``LICENSECHAIN_KEY_REFRESH_INTERVAL`` seconds.

    Raises ``Unavailable`` when the store (or the audit write) fails, ``Conflict`` when
    another process rotated at the same moment: then nothing changed.
    """
    with state.store.unit_of_work(actor) as unit:
        result = state.signing_keys.rotate()
        unit.record(
            Change(
                action="signing_key.rotate",
                target=result.kid,
                data={
                    "previousKid": result.previous_kid,
                    "previousKeyExpiresAt": iso(result.previous_expires_at),
                },
            )
        )
        unit.after_commit(state.keyring.reload)
    return result
