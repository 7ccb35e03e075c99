"""``flask licensechain audit ...``: prove the audit log's hash chain, prune old events.

    flask --app APP licensechain audit verify [--json]
    flask --app APP licensechain audit prune --before 2026-01-01 [--json]

``verify`` walks the chain (``store/audit.py``): exit status 0 with the number of events
proved when it is intact; exit status 1 naming the first broken event (``edited``,
``deleted``, ``reordered``, ``unknown_key``) when it is not. Under ``--json`` it prints
``{"ok", "count", "legacy", "checkpointSeq", "headSeq", "broken": null | {"seq", "id",
"breach", "detail"}}`` either way.

``prune`` deletes the events created before ``--before`` (an ISO 8601 date or date-time,
UTC unless it has an offset) and leaves a signed checkpoint, so that ``verify`` still proves
the rest; it refuses (exit 1) while the chain does not verify. It is recorded as
``audit.prune`` by ``cli``.
"""

from __future__ import annotations

import click

from .command import LicenseChainGroup, cli_actor, emit, issuer
from .serialize import parse_timestamp
from .services.audit import prune_audit_log

audit_cli = LicenseChainGroup("audit", help="The audit log: verify its hash chain, prune it.")


@audit_cli.command("verify", help="Walk the audit log's hash chain; exit 1 if it is broken.")
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    _, store = issuer()
    result = store.audit.verify()
    broken = result.broken
    if broken is None:
        human = f"Audit chain intact: {result.count} event(s) verified"
        if result.checkpoint_seq is not None:
            human += f" after the checkpoint at event {result.checkpoint_seq}"
        if result.legacy:
            human += f"; {result.legacy} older event(s) predate the chain"
        emit(as_json, result.as_json(), human + ".")
        return
    where = f"event {broken.seq}" + (f" (id {broken.id})" if broken.id is not None else "")
    if broken.breach == "unknown_key":  # a key taken out of the ring, not an attack
        human = (
            f"Audit chain cannot be checked from {where}: {broken.detail}. Configure that "
            "encryption key again (it stays until `audit prune` has removed its events)."
        )
    else:
        human = f"Audit chain BROKEN at {where}: {broken.breach}: {broken.detail}."
    if as_json:
        emit(True, result.as_json(), human)
    else:
        click.echo(human, err=True)
    ctx.exit(1)


@audit_cli.command("prune", help="Delete events before a date; leave a signed checkpoint.")
@click.option(
    "--before", "before", required=True, help="ISO 8601 date or date-time (UTC by default)."
)
def prune(as_json: bool, before: str) -> None:
    state, _ = issuer()
    cutoff = parse_timestamp(before, "--before")
    result = prune_audit_log(state, cli_actor(), before=cutoff)
    data = {"pruned": result.events, "legacy": result.legacy, "checkpointSeq": result.seq}
    human = f"Pruned {result.events} chained and {result.legacy} older event(s)"
    human += f"; checkpoint at event {result.seq}." if result.seq is not None else "."
    emit(as_json, data, human)
