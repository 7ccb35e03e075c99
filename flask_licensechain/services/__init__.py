"""The service layer: every state change of the license server, in one place.

The API views, the CLI commands, the console pages and the workers translate their input,
build an ``Actor`` (``api.auth.request_actor()``, ``command.cli_actor()``, the console's
signed-in user, ``store.changes.SYSTEM``) and call a function here; they never write
through a repository themselves, and never call one another.

A service function takes the issuer state (or the store) and the actor first, then
keyword-only arguments, and does its work inside ``store.unit_of_work(actor)``: the change,
its audit event (``UnitOfWork.record``) and, through the store's change listeners, its
webhook outbox event commit together, or not at all. Effects outside the database
(denylist announcements, metrics) go to ``UnitOfWork.after_commit``.

One module per aggregate: ``apps``, ``licenses``, ``api_keys``, ``signing_keys``,
``tokens``, ``webhooks``, ``customers``, ``users``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..core.denylist import Denylist
from ..core.denylist.base import Revocation
from ..serialize import iso
from ..store import UnitOfWork
from ..store.revocations import Announce


def announce_after_commit(unit: UnitOfWork, denylist: Denylist) -> Announce:
    """An ``announce`` for the repositories that hands the entries to ``denylist.publish``
    once ``unit`` has committed: gates learn only revocations that happened (a unit rolled
    back by its audit write announces nothing), and the store stays the record that every
    denylist follows (``store/revocations.py``)."""

    def announce(entries: Sequence[Revocation]) -> None:
        batch = list(entries)
        if batch:
            unit.after_commit(lambda: denylist.publish(batch))

    return announce


def plain(value: Any) -> Any:
    """``value`` as JSON for an audit event: datetimes as ISO 8601 UTC, tuples as lists."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any], fields: Iterable[str]
) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for the ``fields`` whose value changed (as JSON)."""
    changed: dict[str, list[Any]] = {}
    for name in fields:
        old, new = plain(before.get(name)), plain(after.get(name))
        if old != new:
            changed[name] = [old, new]
    return changed
