"""A unit of work: one transaction holding a state change and everything recorded with it.

The service layer (``flask_licensechain/services/``) is the only writer of state changes. It
opens ``store.unit_of_work(actor)``; the repository calls made inside it join its transaction
(``Database.unit``), and ``UnitOfWork.record(change)`` hands the change, in that same
transaction, to each of the store's change listeners in order: the audit log first, then the
webhook outbox. If a listener raises, the whole unit rolls back: no change goes unrecorded,
and no event leaves for a change that did not happen. Callbacks given to ``after_commit``
(denylist announcements, metrics, waking the webhook worker) run once the commit succeeded;
each one runs even when one before it raised, and a failure there is logged, never raised
(the change has happened).

The API, the CLI, the console and the workers build an ``Actor`` for whoever acts and call
the services; they never write through a repository themselves.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import sqlalchemy as sa

from .database import Database

log = logging.getLogger(__name__)

ActorKind = Literal["api_key", "cli", "console", "system", "client"]
ACTOR_KINDS: Final = ("api_key", "cli", "console", "system", "client")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change.

    ``kind`` is ``api_key`` (``id``: the key id, ``name``: its name), ``cli`` (``id``: the
    OS user), ``console`` (``id``: the console user id, ``name``: the role; ``anonymous``
    for a visitor not signed in, as in a failed sign-in), ``system`` (sweepers and workers)
    or ``client`` (a license's client on the public endpoints, ``id``: the license id whose
    key it presented; it binds devices).
    ``ip`` and ``user_agent`` are personal data: the audit log keeps them outside the part
    its hash chain covers, so that an erasure can blank them.
    """

    kind: ActorKind
    id: str
    name: str | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None


SYSTEM: Final = Actor(kind="system", id="system")


@dataclass(frozen=True, slots=True)
class Change:
    """One state change, as the audit log and the webhook outbox receive it.

    ``action`` is ``<aggregate>.<verb>`` (``license.suspend``, ``api_key.rotate``);
    ``target`` the changed object's id; ``app_id`` its app (for app-limited readers and for
    routing events); ``data`` the non-personal facts (for an update: ``{"changes": {field:
    [before, after]}}``); ``personal`` the personal data that goes with the event (e-mail,
    names), kept apart from the chained part; ``subject`` the object after the change (a
    record of ``store/records.py``), from which the webhook payload is serialised.
    """

    action: str
    target: str | None = None
    app_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    personal: Mapping[str, Any] = field(default_factory=dict)
    subject: object = None


#: a listener gets the unit's connection, the actor and the change; raising rolls back
ChangeListener = Callable[[sa.Connection, Actor, Change], None]
#: a committed-change listener runs after the commit (metrics): it cannot roll anything back
CommittedListener = Callable[[Actor, Change], None]


class UnitOfWork:
    """The open transaction of one service call (see the module docstring)."""

    def __init__(
        self, conn: sa.Connection, actor: Actor, listeners: tuple[ChangeListener, ...]
    ) -> None:
        self.conn = conn
        self.actor = actor
        self._listeners = listeners
        self._after_commit: list[Callable[[], None]] = []
        self.changes: list[Change] = []

    def record(self, change: Change) -> None:
        """Hand ``change`` to every listener, in this transaction."""
        for listener in self._listeners:
            listener(self.conn, self.actor, change)
        self.changes.append(change)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the unit has committed (never when it rolls back)."""
        self._after_commit.append(callback)


_CURRENT: contextvars.ContextVar[UnitOfWork | None] = contextvars.ContextVar(
    "licensechain_current_unit", default=None
)


class ChangeRecorder:
    """The store's listeners, and the context manager that opens a unit of work."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._listeners: tuple[ChangeListener, ...] = ()
        self._committed: tuple[CommittedListener, ...] = ()

    def add_listener(self, listener: ChangeListener) -> None:
        """Append ``listener``: it runs after those added before it, in every unit."""
        self._listeners = (*self._listeners, listener)

    def add_committed_listener(self, listener: CommittedListener) -> None:
        """Call ``listener(actor, change)`` for each change of a unit once it has committed
        (never for a rolled-back one), before the unit's ``after_commit`` callbacks."""
        self._committed = (*self._committed, listener)

    @contextmanager
    def unit_of_work(self, actor: Actor) -> Iterator[UnitOfWork]:
        """A ``UnitOfWork`` for ``actor``: committed when the block ends normally (then its
        ``after_commit`` callbacks run, in order), rolled back when it raises. Raises the
        store's typed errors (``Conflict``, ``Unavailable``...).

        Inside another unit it is that unit (one service may call another): its changes keep
        the outer actor, and they commit, or roll back, with the outer unit."""
        outer = _CURRENT.get()
        if outer is not None:
            yield outer
            return
        with self._db.unit() as conn:
            unit = UnitOfWork(conn, actor, self._listeners)
            token = _CURRENT.set(unit)
            try:
                yield unit
            finally:
                _CURRENT.reset(token)
        # The change has happened: a failing listener or callback is logged, never raised
        # (an error answer would invite a retry of a committed change), and the others
        # still run (a metric that cannot be counted must not hold back a revocation's
        # announcement to the denylist).
        for listener in self._committed:
            for change in unit.changes:
                _run_committed(listener, unit.actor, change)
        for callback in unit._after_commit:
            _run_committed(callback)


def _run_committed(callback: Callable[..., object], *args: object) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("after-commit %r failed; the change stays committed", callback)
