"""A data subject's rights: export every record about a customer, erase their personal data.

Both take the issuer state and the ``Actor`` first and work in one unit of work, which
records the change (``customer.export``, ``customer.erase``) in the audit log without the
e-mail: the event's target is the customer's keyed pseudonym (``store/customers.py``).

The export document (``EXPORT_FORMAT`` version ``EXPORT_VERSION``), a JSON object::

    {"format": "licensechain.customer-export", "version": 1, "exportedAt": ISO 8601,
     "subject": {"email"}, "appId": the one app it was limited to or null,
     "appIds": the apps it was limited to, or null for every app,
     "licenses": [license objects as the API returns them, devices included],
     "verificationMetadata": {table: [rows: client IPs, user agents, times]},
     "auditEvents": [{"id", "action", "actor", "target", "data", "createdAt", "actorIp",
                      "actorUserAgent", "personal"}] (an event that only mentions the
                      address: no actor IP or user agent, "data" and "personal" only the
                      values that mention it, {JSONPath: value}),
     "webhookDeliveries": [{"id", "endpointId", "eventId", "eventType", "appId",
                            "status", "payload": the event as sent (JSON) when it is about
                            one of the customer's licenses, else null, "mentionedAt":
                            [JSONPaths of the address in another license's payload],
                            "createdAt", "lastAttemptAt"}],
     "sources": [the tables searched]}

Webhook deliveries are those whose payload names one of the customer's licenses or
mentions the e-mail (``store/customers.delivery_rows``). Erasure keeps license ids, keys,
plans, dates, status, features and device slots (hardware ids pseudonymised); see
``store/customers.py`` for what it blanks or pseudonymises.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any, Final

from ..serialize import iso, license_json
from ..state import IssuerState
from ..store import store_named_key
from ..store.changes import Actor, Change
from ..store.customers import (
    WHOLE_STORE,
    Reach,
    address_pattern,
    audit_rows,
    delivery_rows,
    erase,
    license_ids,
    mentioned,
    normalize_email,
    payload_is_about,
    personal_rows,
)
from ..store.customers import pseudonym as keyed_pseudonym
from ..store.retention import RETAINED

EXPORT_FORMAT: Final = "licensechain.customer-export"
EXPORT_VERSION: Final = 1
PSEUDONYM_KEY: Final = "customers.pseudonym"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return None
    return value


def _payload(text: str) -> Any:
    """A delivery's payload as JSON, or its text when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _event_json(row: Any, ids: set[str], pattern: re.Pattern[str]) -> dict[str, Any]:
    """An audit event as exported: whole when it is about one of the customer's licenses;
    otherwise (it only mentions the address) without the actor's IP and user agent, and
    with only the data and personal values that mention the address, ``{JSONPath: value}``
    (GDPR Art. 15(4))."""
    own = row.target in ids
    personal = row.personal if own else mentioned(pattern, row.personal) or None
    data = row.data if own else mentioned(pattern, row.data)
    return {
        "id": int(row.id),
        "action": row.action,
        "actor": row.actor,
        "target": row.target,
        "data": data,
        "createdAt": iso(row.created_at),
        "actorIp": row.actor_ip if own else None,
        "actorUserAgent": row.actor_user_agent if own else None,
        "personal": personal,
    }


def _delivery_json(row: Any, ids: set[str], email: str, pattern: re.Pattern[str]) -> dict[str, Any]:
    """A delivery as exported: the payload as sent when it is about one of the customer's
    licenses; otherwise (another customer's license mentioning the address) no payload,
    only where the address appears (GDPR Art. 15(4): an export discloses no one else)."""
    decoded = _payload(row.payload)
    own = payload_is_about(decoded, ids, email)
    return {
        "id": int(row.id),
        "endpointId": row.endpoint_id,
        "eventId": row.event_id,
        "eventType": row.event_type,
        "appId": row.app_id,
        "status": row.status,
        "payload": decoded if own else None,
        "mentionedAt": [] if own else sorted(mentioned(pattern, decoded)),
        "createdAt": iso(row.created_at),
        "lastAttemptAt": iso(row.last_attempt_at),
    }


def _single_app(reach: Reach) -> str | None:
    """The one app ``reach`` is limited to, if it is one."""
    return reach.app_ids[0] if reach.app_ids is not None and len(reach.app_ids) == 1 else None


def export_customer(
    state: IssuerState, actor: Actor, *, email: str, reach: Reach = WHOLE_STORE
) -> dict[str, Any]:
    """Every record about ``email`` within ``reach`` as one document.

    :raises InvalidRequest: ``email`` is not one whole address (``normalize_email``).
    :raises Unavailable: the store is down.
    """
    normalize_email(email)  # before anything is read or written
    store = state.store
    key = store_named_key(store.database, state.sealer, PSEUDONYM_KEY)
    now = datetime.now(UTC)
    pattern = address_pattern(email)
    with store.unit_of_work(actor) as unit:
        ids = license_ids(unit.conn, email, reach)
        records = [store.licenses.get(license_id) for license_id in ids]
        events = audit_rows(unit.conn, email, ids, reach)
        personal = personal_rows(unit.conn, ids, email if reach.store_wide else None)
        deliveries = delivery_rows(unit.conn, email, ids, reach)
        unit.record(
            Change(
                action="customer.export",
                target=keyed_pseudonym(key, email),
                app_id=_single_app(reach),
                data={"licenses": len(ids)},
            )
        )
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exportedAt": iso(now),
        "subject": {"email": normalize_email(email)},
        "appId": _single_app(reach),
        "appIds": None if reach.app_ids is None else list(reach.app_ids),
        "licenses": [license_json(lic, now) for lic in records if lic is not None],
        "verificationMetadata": {
            table: [{k: _jsonable(v) for k, v in row.items()} for row in rows]
            for table, rows in personal.items()
        },
        "auditEvents": [_event_json(row, set(ids), pattern) for row in events],
        "webhookDeliveries": [_delivery_json(row, set(ids), email, pattern) for row in deliveries],
        "sources": sorted(
            {"lc_licenses", "lc_devices", "lc_audit_events", "lc_webhook_deliveries"}
            | {e.table.name for e in RETAINED if e.license_id or e.email}
        ),
    }


def erase_customer(
    state: IssuerState, actor: Actor, *, email: str, reach: Reach = WHOLE_STORE
) -> dict[str, Any]:
    """Erase ``email``'s personal data within ``reach``, in one transaction;
    the erasure is an audit event that names the pseudonym, never the e-mail.

    Returns ``{"erased": true, "pseudonym", "licenses", "personalRows", "auditEvents",
    "webhookDeliveries", "devices"}`` (counts of rows changed).

    :raises InvalidRequest: ``email`` is not one whole address (``normalize_email``).
    :raises Unavailable: the store is down.
    """
    normalize_email(email)  # before anything is read or written
    store = state.store
    key = store_named_key(store.database, state.sealer, PSEUDONYM_KEY)
    with store.unit_of_work(actor) as unit:
        replacement, counts = erase(
            unit.conn,
            email,
            key=key,
            personal_metadata_keys=state.settings.personal_metadata_keys,
            reach=reach,
        )
        unit.record(
            Change(
                action="customer.erase",
                target=replacement,
                app_id=_single_app(reach),
                data=counts.as_dict(),
            )
        )
    return {"erased": True, "pseudonym": replacement, **counts.as_dict()}


__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "erase_customer", "export_customer"]
