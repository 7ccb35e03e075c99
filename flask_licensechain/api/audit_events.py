"""``GET /v1/audit-events`` (scope ``audit:read``): the audit log, newest first.

Filters (query parameters, all optional): ``actor`` (the actor's id: an API key id, an OS
user...), ``action`` (``license.suspend``...), ``target`` (an object id), ``app_id`` /
``appId``, ``since`` and ``until`` (ISO 8601 date-times, UTC unless they carry an offset;
``since`` included, ``until`` excluded), ``limit`` (1-100, default 50) and ``cursor``
(the ``nextCursor`` of the page before; opaque). An app-limited key sees only its app's
events (``api/auth.py`` ``app_filter``): events of no app (a signing-key rotation) and of
other apps stay hidden, and asking for another app answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from flask import Response, request

from .. import field_limits as limits
from ..core.errors import InvalidRequest
from ..serialize import audit_event_json, parse_timestamp
from ..state import get_issuer_state
from ..store.audit import AuditFilter
from .auth import app_filter, requires
from .blueprint import bp
from .http import json_response
from .query import query_app_id, query_int

#: the text filters and their longest accepted value
TEXT_FILTERS: Final = {"actor": limits.LOOKUP, "action": 64, "target": limits.LOOKUP}
MAX_CURSOR: Final = 64


def _text(name: str, max_length: int) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_length:
        raise InvalidRequest(f"'{name}' is too long.")
    if "\x00" in value:
        raise InvalidRequest(f"'{name}' must not contain NUL.")
    return value


def _time(name: str) -> datetime | None:
    raw = _text(name, 64)
    return None if raw is None else parse_timestamp(raw, name)


@bp.get("/audit-events")
@requires("audit:read")
def list_audit_events() -> Response:
    """One page of audit events, newest first: ``{"events": [...], "nextCursor"}``
    (``nextCursor`` null on the last page). 400 for a bad filter or cursor."""
    store = get_issuer_state().store
    actor, action, target = (_text(name, size) for name, size in TEXT_FILTERS.items())
    where = AuditFilter(
        actor=actor,
        action=action,
        target=target,
        app_id=app_filter(query_app_id()),
        since=_time("since"),
        until=_time("until"),
    )
    limit = query_int("limit", limits.DEFAULT_PAGE_SIZE, limits.PAGE_SIZE)
    cursor = _text("cursor", MAX_CURSOR)
    events, following = store.audit.page(where, limit=limit, cursor=cursor)
    return json_response(
        {"events": [audit_event_json(event) for event in events], "nextCursor": following}
    )
