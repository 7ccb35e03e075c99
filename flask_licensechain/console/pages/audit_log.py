"""Audit log: the events, newest first, filtered by action, actor, target, app and time,
with the hash chain's integrity as ``flask licensechain audit verify`` reports it.

An app-limited user sees only the events of its apps. Personal data stored outside the
chain (the actor's IP and user agent, the event's personal members) is not shown here.
"""

from __future__ import annotations

from typing import Any, Final

from flask import render_template, request

from ... import field_limits as limits
from ...state import get_issuer_state
from ...store import AuditRecord
from ...store.audit import AuditFilter
from ..auth import requires_scope
from ..blueprint import bp
from .common import check_app, service_call, visible_app_ids
from .forms import AuditFilterForm, parse_when

#: events per page
PAGE_SIZE: Final = 50

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Audit log", "console.audit_log", "audit:read")


#: the actions the overview lists as anomalies (VOCABULARY: security.*)
ANOMALY_ACTIONS: Final = ("security.anomaly", "security.auth_failures")


def _apps(wanted: str | None = None) -> str | tuple[str, ...] | None:
    """The ``AuditFilter.app_id`` for the user: ``wanted`` (404 outside the user's apps),
    else the user's apps (``None``: every app)."""
    allowed = visible_app_ids()
    if wanted:
        check_app(wanted)
        return wanted
    return allowed


def recent_events(*, limit: int, actions: tuple[str, ...] = ()) -> list[AuditRecord]:
    """The newest ``limit`` events the user may see (of ``actions`` when given)."""
    audit = get_issuer_state().store.audit
    apps = _apps()
    if not actions:
        return audit.page(AuditFilter(app_id=apps), limit=limit)[0]
    found = [
        event
        for action in actions
        for event in audit.page(AuditFilter(action=action, app_id=apps), limit=limit)[0]
    ]
    return sorted(found, key=lambda event: event.id, reverse=True)[:limit]


@bp.get("/audit")
@requires_scope("audit:read")
def audit_log() -> Any:
    form = AuditFilterForm(request.args)
    events: list[AuditRecord] = []
    following: str | None = None
    status = 200
    if form.validate():
        where = AuditFilter(
            actor=form.actor.data or None,
            action=form.action.data or None,
            target=form.target.data or None,
            app_id=_apps(form.app_id.data or None),
            since=parse_when(form.since.data),
            until=parse_when(form.until.data),
        )
        cursor = request.args.get("cursor") or None
        if cursor is not None and len(cursor) > limits.LOOKUP:
            cursor = "-"  # refused below as "not a cursor this server gave"
        with service_call() as outcome:
            events, following = get_issuer_state().store.audit.page(
                where, limit=PAGE_SIZE, cursor=cursor
            )
        status = outcome.status
    else:
        status = 400
    following_args = None
    if following is not None:
        following_args = {**request.args.to_dict(), "cursor": following}
    return (
        render_template(
            "console/pages/audit.html",
            form=form,
            events=events,
            following_args=following_args,
            verification=get_issuer_state().store.audit.verify(),
        ),
        status,
    )
