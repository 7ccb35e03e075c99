"""A data subject's records across the store: found by e-mail, exported, erased.

A customer is identified by the e-mail their licenses were issued to (``issued_email``,
compared trimmed and case-insensitively). Their records:

- the licenses issued to that e-mail, with their devices;
- rows of the tables registered for retention (``store/retention.py``) that name one of
  those licenses: client IPs and user agents;
- audit events about one of those licenses, or whose data mentions the e-mail;
- webhook deliveries (``lc_webhook_deliveries``) whose payload names one of those licenses
  or mentions the e-mail (the payload holds the license JSON: e-mail, name, metadata).

Erasure (``erase``) replaces the e-mail with a keyed pseudonym, blanks the name
(``issued_to``), drops the metadata keys the operator lists as personal, blanks the IPs and
user agents of registered rows, blanks the personal columns of the audit events about those
licenses or naming the e-mail (outside the chain's MAC: ``audit verify`` still passes), and
replaces the e-mail inside the data of events older than the chain by the pseudonym, and
pseudonymises the payloads of the webhook deliveries about them: inside each payload the
e-mail becomes the pseudonym, ``issuedTo`` null, the personal metadata keys are dropped. A
delivery row is kept (pending or finished) so the operator's delivery history stays whole;
a pending one is then sent pseudonymised.

Hardware ids are personal data too: a stable device identifier tied to an identified
licensee (an "online identifier", GDPR Art. 4(1) and Recital 30). Erasure replaces each
bound device's ``hwuid`` by ``device_pseudonym`` (``erased-<32 hex>``, keyed, one value per
hardware id), keeping the row with its bound and last-seen times: the license's device
slots still count (``max_devices``); the real hardware id no longer matches, so a device
that verifies again after the erasure is bound anew, in a free slot (or refused when none
is left: the seller can reset the devices).
Delivery payloads get the same pseudonyms in their ``hwuid`` fields.

It keeps what a seller needs for accounting: license ids, keys, plans, dates,
status, features, the number of devices and their times.

The pseudonym, ``erased-<32 hex>``, is an HMAC-SHA-256 of the normalised e-mail under the
named key ``customers.pseudonym`` (``store/named_keys.py``): the same e-mail always gives
the same pseudonym, and nobody without the key can tell which e-mail it was.

Every function takes the connection of the caller's transaction (a unit of work).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from ..core.errors import InvalidRequest
from .retention import RETAINED, RetainedColumns, blank
from .schema import audit_events, devices, licenses
from .webhooks import webhook_deliveries

PSEUDONYM_PREFIX: Final = "erased-"


#: an e-mail address as a customer is named by: one ``@`` between a non-empty local part
#: and domain, no white space (RFC 5322 addr-spec, without quoted local parts). Anything
#: shorter would match other customers' records as a substring.
_ADDRESS: Final = re.compile(r"[^@\s]+@[^@\s]+")
#: characters an address may hold around the ``@`` (RFC 5322 atext, and ``.``)
_ATEXT: Final = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.-"


def normalize_email(email: str) -> str:
    """``email`` trimmed and lower-cased: how licenses are matched to a customer.

    :raises InvalidRequest: ``email`` is not one whole address (``_ADDRESS``).
    """
    normalized = email.strip().lower()
    if not _ADDRESS.fullmatch(normalized):
        raise InvalidRequest("'email' must be one e-mail address (local part, '@', domain).")
    return normalized


def address_pattern(email: str) -> re.Pattern[str]:
    """``email`` as a whole address inside text, case-insensitively: not when it is the
    tail of a longer local part (``joann@x`` for ``ann@x``) or the head of a longer domain
    (``ann@x.test.au`` for ``ann@x.test``)."""
    return re.compile(
        rf"(?<![{_ATEXT}])" + re.escape(normalize_email(email)) + r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])",
        re.IGNORECASE,
    )


def mentions(pattern: re.Pattern[str], value: Any) -> bool:
    """Whether ``value`` (text, or JSON data: keys and string values) holds ``pattern``."""
    if value is None:
        return False
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return pattern.search(text) is not None


def pseudonym(key: bytes, email: str) -> str:
    """``erased-<32 hex>``: HMAC-SHA-256 of the normalised e-mail, keyed."""
    digest = hmac.new(key, normalize_email(email).encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def device_pseudonym(key: bytes, hwuid: str) -> str:
    """``erased-<32 hex>``: HMAC-SHA-256 of the hardware id, keyed (domain-separated from
    the e-mail pseudonym)."""
    digest = hmac.new(key, b"lc-hwuid-v1\x00" + hwuid.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def license_ids(conn: sa.Connection, email: str, app_id: str | None = None) -> list[str]:
    """Ids of the licenses issued to ``email`` (in ``app_id`` when given), oldest first."""
    match = sa.func.lower(sa.func.trim(licenses.c.issued_email)) == normalize_email(email)
    statement = sa.select(licenses.c.id).where(match)
    if app_id is not None:
        statement = statement.where(licenses.c.app_id == app_id)
    statement = statement.order_by(licenses.c.created_at, licenses.c.id)
    return [row.id for row in conn.execute(statement)]


def _may_mention(email: str, column: Any = None) -> sa.ColumnElement[bool]:
    """SQL prefilter: ``column`` (default the event data) holds ``email`` as text,
    case-insensitively, maybe inside a longer address; ``address_pattern`` decides."""
    needle = normalize_email(email).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    target = audit_events.c.data if column is None else column
    text = sa.func.lower(sa.cast(target, sa.Text))
    return text.like(f"%{needle}%", escape="\\")


def audit_rows(
    conn: sa.Connection, email: str, ids: Sequence[str], *, mentions_too: bool = True
) -> list[Any]:
    """Audit events about one of ``ids`` or (``mentions_too``) whose data or personal
    columns mention ``email`` as a whole address, oldest first. An app-limited caller
    passes ``mentions_too=False``: other apps' events may mention the e-mail."""
    about = audit_events.c.target.in_(list(ids)) if ids else sa.false()
    if not mentions_too:
        statement = sa.select(audit_events).where(about).order_by(audit_events.c.id)
        return list(conn.execute(statement))
    pattern = address_pattern(email)
    maybe = sa.or_(_may_mention(email), _may_mention(email, audit_events.c.personal))
    statement = sa.select(audit_events).where(sa.or_(about, maybe)).order_by(audit_events.c.id)
    wanted = set(ids)
    return [
        row
        for row in conn.execute(statement)
        if row.target in wanted or mentions(pattern, row.data) or mentions(pattern, row.personal)
    ]


def _present(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def personal_rows(
    conn: sa.Connection, ids: Sequence[str], email: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """``{table: [row as a dict]}`` of the registered retention tables linked to ``ids``
    and, when ``email`` is given (a whole-store search), to that address."""
    found: dict[str, list[dict[str, Any]]] = {}
    present = _present(conn)
    for entry in RETAINED:
        where = _personal_link(entry, ids, email)
        if where is None or entry.table.name not in present:
            continue
        rows = conn.execute(sa.select(entry.table).where(where)).mappings()
        found[entry.table.name] = [dict(row) for row in rows]
    return found


def _personal_link(
    entry: RetainedColumns, ids: Sequence[str], email: str | None
) -> sa.ColumnElement[bool] | None:
    """Which rows of ``entry`` are about the licenses ``ids`` or the address ``email``;
    ``None`` when none can be."""
    if entry.license_id is not None and ids:
        return entry.table.c[entry.license_id].in_(list(ids))
    if entry.email is not None and email is not None:
        column = entry.table.c[entry.email]
        return sa.func.lower(sa.func.trim(column)) == normalize_email(email)
    return None


def delivery_rows(
    conn: sa.Connection, email: str, ids: Sequence[str], app_id: str | None = None
) -> list[Any]:
    """The webhook deliveries (in ``app_id`` when given) whose payload names one of ``ids``
    or mentions ``email`` as a whole address, oldest first; ``[]`` when the webhook tables
    do not exist."""
    if webhook_deliveries.name not in _present(conn):
        return []
    payload = webhook_deliveries.c.payload
    maybe = sa.or_(
        _may_mention(email, payload), *(payload.contains(i, autoescape=True) for i in ids)
    )
    if app_id is not None:
        maybe = sa.and_(maybe, webhook_deliveries.c.app_id == app_id)
    statement = sa.select(webhook_deliveries).where(maybe).order_by(webhook_deliveries.c.id)
    pattern = address_pattern(email)
    return [
        row
        for row in conn.execute(statement)
        if mentions(pattern, row.payload) or any(i in row.payload for i in ids)
    ]


def _redact_payload(value: Any, drop: set[str], hwuids: dict[str, str]) -> Any:
    """``value`` (a delivery payload) with every ``issuedTo`` nulled, the personal keys of
    every ``metadata`` object dropped, and every ``hwuid`` found in ``hwuids`` replaced."""
    if isinstance(value, list):
        return [_redact_payload(v, drop, hwuids) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k == "issuedTo":
            out[k] = None
        elif k == "hwuid" and isinstance(v, str):
            out[k] = hwuids.get(v, v)
        elif k == "metadata" and isinstance(v, dict):
            out[k] = {
                mk: _redact_payload(mv, drop, hwuids) for mk, mv in v.items() if mk not in drop
            }
        else:
            out[k] = _redact_payload(v, drop, hwuids)
    return out


_encode_payload = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _batches(ids: Sequence[int], size: int = 500) -> Iterable[Sequence[int]]:
    """``ids`` in slices of ``size``: an ``IN`` list stays under the drivers' parameter
    limits (SQLite's 32,766)."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


@dataclass(frozen=True)
class ErasureCounts:
    licenses: int
    personal_rows: int
    audit_events: int
    webhook_deliveries: int = 0
    devices: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "devices": self.devices,
            "licenses": self.licenses,
            "personalRows": self.personal_rows,
            "auditEvents": self.audit_events,
            "webhookDeliveries": self.webhook_deliveries,
        }


def _scrub(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:
    """``value`` (text or JSON data) with every whole address matching ``pattern`` in its
    keys and strings rewritten to ``replacement``."""
    if isinstance(value, str):
        return pattern.sub(replacement, value)
    if isinstance(value, dict):
        return {
            _scrub(k, pattern, replacement): _scrub(v, pattern, replacement)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, pattern, replacement) for v in value]
    return value


def erase(
    conn: sa.Connection,
    email: str,
    *,
    key: bytes,
    personal_metadata_keys: Iterable[str] = (),
    app_id: str | None = None,
) -> tuple[str, ErasureCounts]:
    """Erase ``email``'s personal data (see the module docstring); returns the pseudonym
    and what was changed. Idempotent: a second run finds nothing to change."""
    replacement = pseudonym(key, email)
    pattern = address_pattern(email)
    ids = license_ids(conn, email, app_id)
    drop = set(personal_metadata_keys)
    deliveries = delivery_rows(conn, email, ids, app_id)  # before the licenses change
    for license_id in ids:
        meta = conn.execute(sa.select(licenses.c.meta).where(licenses.c.id == license_id)).scalar()
        kept = {k: v for k, v in dict(meta or {}).items() if k not in drop}
        conn.execute(
            sa.update(licenses)
            .where(licenses.c.id == license_id)
            .values(
                issued_email=replacement, issued_to=None, meta=_scrub(kept, pattern, replacement)
            )
        )
    hwuids: dict[str, str] = {}
    device_count = 0
    if ids:
        bound = sa.select(devices.c.license_id, devices.c.hwuid).where(
            devices.c.license_id.in_(ids), devices.c.hwuid.not_like(f"{PSEUDONYM_PREFIX}%")
        )
        for row in conn.execute(bound).all():
            hwuids[row.hwuid] = device_pseudonym(key, row.hwuid)
            conn.execute(
                sa.update(devices)
                .where(devices.c.license_id == row.license_id, devices.c.hwuid == row.hwuid)
                .values(hwuid=hwuids[row.hwuid])
            )
            device_count += 1
    blanked = 0
    present = _present(conn)
    for entry in RETAINED:
        link = _personal_link(entry, ids, email if app_id is None else None)
        if link is None or entry.table.name not in present:
            continue
        names = (*entry.ips, *entry.user_agents, *entry.blank_together)
        columns: dict[str, Any] = {name: blank(entry.table.c[name]) for name in names}
        if entry.email is not None and entry.license_id is None:
            columns[entry.email] = replacement
        if columns:
            blanked += conn.execute(sa.update(entry.table).where(link).values(columns)).rowcount
    # Chained events: blank the personal columns, which stay outside the MAC (store/audit.py),
    # so the chain still verifies. Events from before the chain (seq NULL): scrub their data.
    about = audit_events.c.target.in_(ids) if ids else sa.false()
    chained = [
        row.id
        for row in audit_rows(conn, email, ids, mentions_too=app_id is None)
        if row.personal_salt is not None
        and (row.target in ids or (app_id is None and mentions(pattern, row.personal)))
    ]
    scrubbed = 0
    for batch in _batches(chained):
        scrubbed += conn.execute(
            sa.update(audit_events)
            .where(audit_events.c.id.in_(batch))
            .values(actor_ip=None, actor_user_agent=None, personal=None, personal_salt=None)
        ).rowcount
    legacy = sa.and_(audit_events.c.seq.is_(None), _may_mention(email))
    if app_id is not None:
        legacy = sa.and_(legacy, about)
    for row in conn.execute(sa.select(audit_events.c.id, audit_events.c.data).where(legacy)).all():
        data = json.loads(json.dumps(row.data))
        scrubbed_data = _scrub(data, pattern, replacement)
        if scrubbed_data == data:
            continue
        conn.execute(
            sa.update(audit_events).where(audit_events.c.id == row.id).values(data=scrubbed_data)
        )
        scrubbed += 1
    rewritten = 0
    for row in deliveries:
        try:
            payload = json.loads(row.payload)
        except ValueError:  # not JSON: scrub the text itself
            new_payload = _scrub(row.payload, pattern, replacement)
        else:
            new_payload = _encode_payload(
                _scrub(_redact_payload(payload, drop, hwuids), pattern, replacement)
            )
        if new_payload != row.payload:
            conn.execute(
                sa.update(webhook_deliveries)
                .where(webhook_deliveries.c.id == row.id)
                .values(payload=new_payload)
            )
            rewritten += 1
    return replacement, ErasureCounts(len(ids), blanked, scrubbed, rewritten, device_count)


__all__ = [
    "PSEUDONYM_PREFIX",
    "ErasureCounts",
    "address_pattern",
    "audit_rows",
    "delivery_rows",
    "device_pseudonym",
    "erase",
    "license_ids",
    "mentions",
    "normalize_email",
    "personal_rows",
    "pseudonym",
]
