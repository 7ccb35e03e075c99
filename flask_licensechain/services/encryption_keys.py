"""Rotating the keys that seal secrets at rest (``core/sealing.py``, ``store/sealed.py``)."""

from __future__ import annotations

import dataclasses

from ..state import IssuerState
from ..store.changes import Actor, Change
from ..store.sealed import Progress, ResealReport, reseal_all


def rotate_encryption_key(
    state: IssuerState, actor: Actor, *, progress: Progress | None = None
) -> ResealReport:
    """Re-seal every sealed secret under the keyring's first key, in one unit of work with
    its ``encryption_key.rotate`` audit event (target: the key id; never key material).

    :raises UnknownSealingKey, KeyMaterialError: a value cannot be unsealed (nothing changes).
    :raises Unavailable: the store is down.
    """
    with state.store.unit_of_work(actor) as unit:
        report = reseal_all(state.store.database, state.sealer, progress=progress)
        # The audit chain is never re-MAC'd (that would hide edits): a key that MACs stored
        # events stays needed for ``audit verify`` until they are pruned.
        chained = state.store.audit.key_ids_in_use()
        report = dataclasses.replace(
            report,
            removable=tuple(k for k in report.removable if k not in chained),
            audit_key_ids=tuple(k for k in report.removable if k in chained),
        )
        unit.record(
            Change(
                action="encryption_key.rotate",
                target=report.key_id,
                data={"resealed": report.resealed, "removable": list(report.removable)},
            )
        )
    return report


__all__ = ["rotate_encryption_key"]
