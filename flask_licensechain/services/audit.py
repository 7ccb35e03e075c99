"""Audit-log retention (``audit.prune``)."""

from __future__ import annotations

from datetime import datetime

from ..serialize import iso
from ..state import IssuerState
from ..store import Actor, Change
from ..store.audit import Prune


def prune_audit_log(state: IssuerState, actor: Actor, *, before: datetime) -> Prune:
    """Delete the events created before ``before`` that open the chain, leaving a signed
    checkpoint (``AuditRepository.prune``), and record ``audit.prune`` (the first event
    after the checkpoint). Raises ``InvalidRequest`` when the chain does not verify,
    ``Unavailable``."""
    with state.store.unit_of_work(actor) as unit:
        result = state.store.audit.prune(unit.conn, before)
        unit.record(
            Change(
                action="audit.prune",
                data={
                    "before": iso(before),
                    "pruned": result.events,
                    "legacy": result.legacy,
                    "throughSeq": result.seq,
                },
            )
        )
    return result
