"""Signing keys: the first key at start-up (``signing_key.create``) and rotation
(``signing_key.rotate``), each with its audit event."""

from __future__ import annotations

import logging

from ..core.errors import Conflict
from ..serialize import iso
from ..signing import RotationResult, SigningKeys
from ..state import IssuerState
from ..store import Actor, Change, Store, UnitOfWork
from ..store.changes import SYSTEM

log = logging.getLogger("licensechain")


def ensure_active_signing_key(
    store: Store, keys: SigningKeys, signing_key_file: str | None
) -> None:
    """Start-up: make sure the store has an active signing key, by the system actor.

    - none yet: store ``LICENSECHAIN_SIGNING_KEY_FILE``'s key, or a fresh one
      (``signing_key.create``, ``data.source`` ``"file"`` or ``"generated"``); workers
      racing here are fine: the store admits one active key, the losers use the winner's;
    - the file holds a key never seen: rotate to it (``signing_key.rotate``, source
      ``"file"``); a key rotated out earlier is not brought back (a warning).

    Raises ``KeyMaterialError`` for an unreadable file, ``Unavailable`` when the store (or
    the audit write) fails.
    """
    imported = keys.load_key_file(signing_key_file)
    active = store.signing_keys.active()
    source = "generated" if imported is None else "file"
    try:
        if active is None:
            with store.unit_of_work(SYSTEM) as unit:
                key = keys.create_first(imported)
                unit.record(
                    Change(action="signing_key.create", target=key.kid, data={"source": source})
                )
            log.info("created signing key %s", key.kid)
        elif imported is not None and active.kid != imported.kid:
            if store.signing_keys.get(imported.kid) is not None:
                log.warning(
                    "LICENSECHAIN_SIGNING_KEY_FILE holds key %s, which was rotated out; "
                    "keeping the active key %s",
                    imported.kid,
                    active.kid,
                )
            else:
                with store.unit_of_work(SYSTEM) as unit:
                    _record_rotation(unit, keys.rotate(imported), source)
    except Conflict:
        log.info("another worker stored the signing key first")
    keys.retire_expired()


def _record_rotation(unit: UnitOfWork, result: RotationResult, source: str) -> None:
    unit.record(
        Change(
            action="signing_key.rotate",
            target=result.kid,
            data={
                "previousKid": result.previous_kid,
                "previousKeyExpiresAt": iso(result.previous_expires_at),
                "source": source,
            },
        )
    )


def rotate_signing_key(state: IssuerState, actor: Actor) -> RotationResult:
    """Make a new active signing key; the old one stays in the JWKS until its last token
    expires (``SigningKeys.retire_after``). This worker signs with the new key once the unit
    has committed; the others within ``LICENSECHAIN_KEY_REFRESH_INTERVAL`` seconds.

    Raises ``Unavailable`` when the store (or the audit write) fails, ``Conflict`` when
    another process rotated at the same moment: then nothing changed.
    """
    with state.store.unit_of_work(actor) as unit:
        result = state.signing_keys.rotate()
        _record_rotation(unit, result, "generated")
        unit.after_commit(state.keyring.reload)
    return result
