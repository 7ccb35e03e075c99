"""Token revocation (``token.revoke``): the denylist entry and its audit event in one unit."""

from __future__ import annotations

from datetime import UTC, datetime

from ..state import IssuerState
from ..store import Actor, Change
from . import announce_after_commit


def revoke_token(
    state: IssuerState,
    actor: Actor,
    *,
    jti: str,
    until: float,
    now: float,
    app_id: str | None = None,
) -> None:
    """Denylist ``jti`` until ``until`` (unix seconds; nothing to write when it is not after
    ``now``: the token is already dead), and record the revocation. ``app_id``: the token's
    app when known. Idempotent. Raises ``Unavailable`` (nothing written)."""
    live = until > now
    with state.store.unit_of_work(actor) as unit:
        if live:
            announce = announce_after_commit(unit, state.denylist)
            state.store.revocations.revoke_token(jti, until, now, announce=announce)
        expires = datetime.fromtimestamp(until, UTC).isoformat() if live else None
        unit.record(
            Change(action="token.revoke", target=jti, app_id=app_id, data={"until": expires})
        )
