"""A data subject's records across the store: found by e-mail, exported, erased.

A customer is identified by the e-mail their licenses were issued to (``issued_email``,
compared trimmed and case-insensitively). Their records:

- the licenses issued to that e-mail, with their devices;
- rows of the tables registered for retention (``store/retention.py``) that name one of
  those licenses: client IPs and user agents;
- audit events about one of those licenses, or whose data mentions the e-mail.

Erasure (``erase``) replaces the e-mail with a keyed pseudonym, blanks the name
(``issued_to``), drops the metadata keys the operator lists as personal, blanks the IPs and
user agents of registered rows, blanks the personal columns of the audit events about those
licenses or naming the e-mail (outside the chain's MAC: ``audit verify`` still passes), and
replaces the e-mail inside the data of events older than the chain by the pseudonym. It
keeps what a seller needs for accounting: license ids, keys, plans, dates,
status, features, devices. The pseudonym, ``erased-<32 hex>``, is an HMAC-SHA-256 of the
normalised e-mail under the named key ``customers.pseudonym`` (``store/named_keys.py``):
the same e-mail always gives the same pseudonym, and nobody without the key can tell which
e-mail it was.

Every function takes the connection of the caller's transaction (a unit of work).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from .retention import RETAINED
from .schema import audit_events, licenses

PSEUDONYM_PREFIX: Final = "erased-"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def pseudonym(key: bytes, email: str) -> str:
    """``erased-<32 hex>``: HMAC-SHA-256 of the normalised e-mail, keyed."""
    digest = hmac.new(key, normalize_email(email).encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def license_ids(conn: sa.Connection, email: str, app_id: str | None = None) -> list[str]:
    """Ids of the licenses issued to ``email`` (in ``app_id`` when given), oldest first."""
    match = sa.func.lower(sa.func.trim(licenses.c.issued_email)) == normalize_email(email)
    statement = sa.select(licenses.c.id).where(match)
    if app_id is not None:
        statement = statement.where(licenses.c.app_id == app_id)
    statement = statement.order_by(licenses.c.created_at, licenses.c.id)
    return [row.id for row in conn.execute(statement)]


def _mentions(email: str, column: Any = None) -> sa.ColumnElement[bool]:
    """``column`` (default the event data) holds ``email`` as text, case-insensitively."""
    needle = normalize_email(email).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    target = audit_events.c.data if column is None else column
    text = sa.func.lower(sa.cast(target, sa.Text))
    return text.like(f"%{needle}%", escape="\\")


def audit_rows(
    conn: sa.Connection, email: str, ids: Sequence[str], *, mentions: bool = True
) -> list[Any]:
    """Audit events about one of ``ids`` or (``mentions``) whose data mentions ``email``,
    oldest first. An app-limited caller passes ``mentions=False``: other apps' events may
    mention the e-mail."""
    about = audit_events.c.target.in_(list(ids)) if ids else sa.false()
    found = sa.or_(_mentions(email), _mentions(email, audit_events.c.personal))
    where = sa.or_(about, found) if mentions else about
    statement = sa.select(audit_events).where(where).order_by(audit_events.c.id)
    return list(conn.execute(statement))


def _present(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def personal_rows(conn: sa.Connection, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """``{table: [row as a dict]}`` of the registered retention tables linked to ``ids``."""
    found: dict[str, list[dict[str, Any]]] = {}
    present = _present(conn)
    for entry in RETAINED:
        if entry.license_id is None or entry.table.name not in present or not ids:
            continue
        link = entry.table.c[entry.license_id]
        rows = conn.execute(sa.select(entry.table).where(link.in_(list(ids)))).mappings()
        found[entry.table.name] = [dict(row) for row in rows]
    return found


@dataclass(frozen=True)
class ErasureCounts:
    licenses: int
    personal_rows: int
    audit_events: int

    def as_dict(self) -> dict[str, int]:
        return {
            "licenses": self.licenses,
            "personalRows": self.personal_rows,
            "auditEvents": self.audit_events,
        }


def _scrub(value: Any, needle: str, replacement: str) -> Any:
    """``value`` (JSON data) with every string holding ``needle`` (case-insensitive)
    rewritten to ``replacement`` in its place."""
    if isinstance(value, str):
        lowered = value.lower()
        if needle not in lowered:
            return value
        out, start = [], 0
        while (at := lowered.find(needle, start)) >= 0:
            out.append(value[start:at] + replacement)
            start = at + len(needle)
        return "".join(out) + value[start:]
    if isinstance(value, dict):
        return {
            _scrub(k, needle, replacement): _scrub(v, needle, replacement) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, needle, replacement) for v in value]
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
    needle = normalize_email(email)
    ids = license_ids(conn, email, app_id)
    drop = set(personal_metadata_keys)
    for license_id in ids:
        meta = conn.execute(sa.select(licenses.c.meta).where(licenses.c.id == license_id)).scalar()
        kept = {k: v for k, v in dict(meta or {}).items() if k not in drop}
        conn.execute(
            sa.update(licenses)
            .where(licenses.c.id == license_id)
            .values(
                issued_email=replacement, issued_to=None, meta=_scrub(kept, needle, replacement)
            )
        )
    blanked = 0
    present = _present(conn)
    for entry in RETAINED:
        if entry.license_id is None or entry.table.name not in present or not ids:
            continue
        columns = {name: None for name in (*entry.ips, *entry.user_agents)}
        if columns:
            link = entry.table.c[entry.license_id]
            result = conn.execute(sa.update(entry.table).where(link.in_(ids)).values(columns))
            blanked += result.rowcount
    # Chained events: blank the personal columns, which stay outside the MAC (store/audit.py),
    # so the chain still verifies. Events from before the chain (seq NULL): scrub their data.
    about = audit_events.c.target.in_(ids) if ids else sa.false()
    personal_mention = _mentions(email, audit_events.c.personal)
    if app_id is None:
        chained = sa.or_(about, personal_mention)
    else:
        chained = sa.and_(about, sa.true())
    blanked_events = conn.execute(
        sa.update(audit_events)
        .where(chained, audit_events.c.personal_salt.is_not(None))
        .values(actor_ip=None, actor_user_agent=None, personal=None, personal_salt=None)
    ).rowcount
    legacy = sa.and_(audit_events.c.seq.is_(None), _mentions(email))
    if app_id is not None:
        legacy = sa.and_(legacy, about)
    scrubbed = int(blanked_events)
    for row in conn.execute(sa.select(audit_events.c.id, audit_events.c.data).where(legacy)).all():
        data = json.loads(json.dumps(row.data))
        conn.execute(
            sa.update(audit_events)
            .where(audit_events.c.id == row.id)
            .values(data=_scrub(data, needle, replacement))
        )
        scrubbed += 1
    return replacement, ErasureCounts(len(ids), blanked, scrubbed)


__all__ = [
    "PSEUDONYM_PREFIX",
    "ErasureCounts",
    "audit_rows",
    "erase",
    "license_ids",
    "normalize_email",
    "personal_rows",
    "pseudonym",
]
