"""A data subject's records across the store: found by e-mail, exported, erased.

A customer is identified by the e-mail their licenses were issued to (``issued_email``,
compared with white space trimmed and lower-cased, in Python: SQL's ``lower`` and ``trim``
differ between the databases and from Python's, so SQL only pre-filters on the address's
longest ASCII run, case-insensitively, and Python decides). Their records:

- the licenses issued to that e-mail, with their devices;
- rows of the tables registered for retention (``store/retention.py``) that name one of
  those licenses: client IPs and user agents;
- audit events about one of those licenses, or whose data mentions the e-mail;
- webhook deliveries (``lc_webhook_deliveries``) whose payload names one of those licenses
  or mentions the e-mail (the payload holds the license JSON: e-mail, name, metadata);
- the rows of tables registered with an ``email`` column (console sign-in failures).

An address is mentioned only as a whole address (``address_pattern``): never as the tail of
a longer local part or the head of a longer domain, in any script. A ``Reach`` says which
records a request covers: the licenses of some apps or of every app, and (``store_wide``)
the records tied to no app: events and deliveries that only mention the address, sign-in
failures.

Erasure (``erase``) replaces the e-mail with a keyed pseudonym, blanks the name
(``issued_to``), drops the metadata keys the operator lists as personal, blanks the IPs and
user agents of registered rows, blanks the personal columns of the audit events about those
licenses or naming the e-mail (outside the chain's MAC: ``audit verify`` still passes), and
replaces the e-mail inside the data of events older than the chain by the pseudonym, and
pseudonymises the payloads of the webhook deliveries about them: inside each payload the
e-mail becomes the pseudonym, and in the payloads about her licenses ``issuedTo`` is null,
the personal metadata keys are dropped and every hardware id is pseudonymised; a payload
about another customer's license that mentions her address keeps that customer's data, with
her address replaced. The address is replaced in the same way inside other licenses'
metadata and name. A delivery row is kept (pending or finished) so the operator's delivery
history stays whole; a pending one is then sent pseudonymised.

Hardware ids are personal data too: a stable device identifier tied to an identified
licensee (an "online identifier", GDPR Art. 4(1) and Recital 30). Erasure replaces each
bound device's ``hwuid`` by ``device_pseudonym`` (``erased-<32 hex>``, keyed, one value per
hardware id; a value already of that exact form is one), keeping the row with its bound and
last-seen times: the license's device slots still count (``max_devices``); the real
hardware id no longer matches, so a device that verifies again after the erasure is bound
anew, in a free slot (or refused when none is left: the seller can reset the devices). A
later erasure folds that new row into the first one's slot. Delivery payloads get the same
pseudonyms in their ``hwuid`` fields, released devices' included.

Audit events about the licenses of an app deleted since keep their personal columns until
retention blanks them (``LICENSECHAIN_RETENTION_DAYS_IP``): with the license gone, nothing
links them to the e-mail.

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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from ..core.errors import InvalidRequest
from .retention import RETAINED, RetainedColumns, blank
from .schema import api_keys, apps, audit_events, devices, licenses
from .webhooks import webhook_deliveries, webhook_endpoints

PSEUDONYM_PREFIX: Final = "erased-"
_PSEUDONYM: Final = re.compile(r"erased-[0-9a-f]{32}")

#: an e-mail address as a customer is named by: one ``@`` between a non-empty local part
#: and domain, no white space (RFC 5322 addr-spec, without quoted local parts). Anything
#: shorter would match other customers' records as a substring.
_ADDRESS: Final = re.compile(r"[^@\s]+@[^@\s]+")
#: characters that continue an address (RFC 5322 atext and ``.``; RFC 6531 allows any
#: non-ASCII letter, hence ``\w``)
_BEFORE: Final = r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
_AFTER: Final = r"(?![\w-]|\.\w)"
#: ``IN`` lists are cut to this many values: under SQLite's 32,766 and psycopg's 65,535
#: parameters per statement
_BATCH: Final = 500
#: past this many licenses, deliveries are matched in Python rather than by one ``LIKE``
#: per license id
_LIKE_IDS: Final = 50


@dataclass(frozen=True)
class Reach:
    """Which records a request covers: the licenses of ``app_ids`` (``None``: every app)
    and, when ``store_wide``, the records tied to no app (audit events and deliveries that
    only mention the address, rows registered with an ``email`` column)."""

    app_ids: tuple[str, ...] | None = None
    store_wide: bool = True


#: the whole store: an operator's CLI, an unrestricted live key while no test app exists
WHOLE_STORE: Final = Reach()


def fold(text: str) -> str:
    """``text`` with white space trimmed and lower-cased (Python's rules, the one place)."""
    return text.strip().lower()


def normalize_email(email: str) -> str:
    """``email`` folded: how licenses are matched to a customer.

    :raises InvalidRequest: ``email`` is not one whole address (``_ADDRESS``).
    """
    normalized = fold(email)
    if not _ADDRESS.fullmatch(normalized):
        raise InvalidRequest(
            "The e-mail must be one whole e-mail address (local part, '@', domain)."
        )
    return normalized


def address_pattern(email: str) -> re.Pattern[str]:
    """``email`` as a whole address inside text, case-insensitively: not when it is the
    tail of a longer local part (``joann@x``, ``jöann@x`` for ``ann@x``) or the head of a
    longer domain (``ann@x.test.au`` for ``ann@x.test``)."""
    # U+0130 (capital I with dot) is the one character whose lower case is two characters
    # (``i`` and U+0307): a case-insensitive match compares one character with one.
    needle = re.escape(normalize_email(email)).replace("i\u0307", "(?:i\u0307|\u0130)")
    return re.compile(_BEFORE + needle + _AFTER, re.IGNORECASE)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def mentions(pattern: re.Pattern[str], value: Any) -> bool:
    """Whether ``value`` (text, or JSON data: keys and string values) holds ``pattern``."""
    return value is not None and pattern.search(_text(value)) is not None


def mentioned(pattern: re.Pattern[str], value: Any, path: str = "$") -> dict[str, str]:
    """``{JSONPath: the address as written there}`` for every key or string of ``value``
    that holds ``pattern``: where the address appears, and nothing else of the text (it may
    name other people)."""
    if isinstance(value, str):
        found = pattern.search(value)
        return {path: found.group(0)} if found else {}
    hits: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}"
            if found := pattern.search(str(key)):
                hits[inner] = found.group(0)
            hits.update(mentioned(pattern, item, inner))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            hits.update(mentioned(pattern, item, f"{path}[{index}]"))
    return hits


def pseudonym(key: bytes, email: str) -> str:
    """``erased-<32 hex>``: HMAC-SHA-256 of the normalised e-mail, keyed."""
    digest = hmac.new(key, normalize_email(email).encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def device_pseudonym(key: bytes, hwuid: str) -> str:
    """``erased-<32 hex>``: HMAC-SHA-256 of the hardware id, keyed (domain-separated from
    the e-mail pseudonym); a value already of that form is kept (an erased device)."""
    if _PSEUDONYM.fullmatch(hwuid):
        return hwuid
    digest = hmac.new(key, b"lc-hwuid-v1\x00" + hwuid.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def _batches(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _BATCH):
        yield values[start : start + _BATCH]


def _ascii_run(email: str) -> str:
    """The address's longest run of ASCII characters other than ``k`` (there is always the
    ``@``)."""
    # ``k`` is left out: U+212A (KELVIN SIGN) lower-cases to it in Python, never in SQLite.
    runs: list[str] = re.findall(r"[\x21-\x6a\x6c-\x7e]+", normalize_email(email))
    return max(runs, key=len)


def _may_mention(email: str, column: Any) -> sa.ColumnElement[bool]:
    """SQL pre-filter: ``column``'s text holds the address's longest ASCII run, ignoring
    ASCII case (the same on both databases, and inside JSON's ``\\u`` escapes);
    ``address_pattern`` then decides in Python."""
    run = _ascii_run(email).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.cast(column, sa.Text).ilike(f"%{run}%", escape="\\")


def _in_reach(column: sa.Column[Any], reach: Reach) -> sa.ColumnElement[bool]:
    if reach.app_ids is None:
        return sa.true()
    return column.in_(list(reach.app_ids))


def license_ids(conn: sa.Connection, email: str, reach: Reach = WHOLE_STORE) -> list[str]:
    """Ids of the licenses issued to ``email`` within ``reach``, oldest first."""
    needle = normalize_email(email)
    statement = (
        sa.select(licenses.c.id, licenses.c.issued_email)
        .where(_may_mention(email, licenses.c.issued_email), _in_reach(licenses.c.app_id, reach))
        .order_by(licenses.c.created_at, licenses.c.id)
    )
    return [row.id for row in conn.execute(statement) if fold(row.issued_email) == needle]


def _about(conn: sa.Connection, table: sa.Table, column: str, ids: Sequence[str]) -> list[Any]:
    """The rows of ``table`` whose ``column`` is one of ``ids``, in batches."""
    found: list[Any] = []
    for batch in _batches(ids):
        found += conn.execute(sa.select(table).where(table.c[column].in_(batch))).all()
    return found


def audit_rows(
    conn: sa.Connection, email: str, ids: Sequence[str], reach: Reach = WHOLE_STORE
) -> list[Any]:
    """Audit events about one of ``ids``, or whose data or personal columns mention
    ``email`` as a whole address: anywhere when ``reach.store_wide``, else in the apps of
    ``reach`` (a license moved to another holder keeps its earlier events there), oldest
    first."""
    rows = {row.id: row for row in _about(conn, audit_events, "target", ids)}
    pattern = address_pattern(email)
    maybe = sa.or_(
        _may_mention(email, audit_events.c.data),
        _may_mention(email, audit_events.c.personal),
    )
    statement = sa.select(audit_events).where(maybe)
    if not reach.store_wide:
        statement = statement.where(_in_reach(audit_events.c.app_id, reach))
    for row in conn.execute(statement):
        if mentions(pattern, row.data) or mentions(pattern, row.personal):
            rows[row.id] = row
    return [rows[key] for key in sorted(rows)]


def _present(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _personal_link(
    conn: sa.Connection, entry: RetainedColumns, ids: Sequence[str], email: str | None
) -> list[sa.ColumnElement[bool]]:
    """``WHERE`` clauses (one per batch) picking the rows of ``entry`` about the licenses
    ``ids`` or the address ``email``; ``[]`` when none can be."""
    if entry.license_id is not None:
        column = entry.table.c[entry.license_id]
        return [column.in_(batch) for batch in _batches(ids)]
    if entry.email is None or email is None:
        return []
    needle = normalize_email(email)
    column = entry.table.c[entry.email]
    (pk,) = entry.table.primary_key.columns
    statement = sa.select(pk, column).where(_may_mention(email, column))
    keys = [row[0] for row in conn.execute(statement) if fold(row[1] or "") == needle]
    return [pk.in_(batch) for batch in _batches(keys)]


def personal_rows(
    conn: sa.Connection, ids: Sequence[str], email: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """``{table: [row as a dict]}`` of the registered retention tables linked to ``ids``
    and, when ``email`` is given (a store-wide search), to that address."""
    found: dict[str, list[dict[str, Any]]] = {}
    present = _present(conn)
    for entry in RETAINED:
        clauses = _personal_link(conn, entry, ids, email)
        if not clauses or entry.table.name not in present:
            continue
        rows: list[dict[str, Any]] = []
        for where in clauses:
            rows += [
                dict(row) for row in conn.execute(sa.select(entry.table).where(where)).mappings()
            ]
        found[entry.table.name] = rows
    return found


def _payload(text: str) -> Any:
    """A delivery's payload as JSON, or its text when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def payload_is_about(payload: Any, ids: set[str], email: str) -> bool:
    """Whether a delivery's payload is about one of the customer's licenses: ``data.id``
    is one of ``ids``, or ``data.issuedEmail`` is the address (a license since deleted)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return False
    found = data.get("id")
    if isinstance(found, str) and found in ids:
        return True
    issued = data.get("issuedEmail")
    return isinstance(issued, str) and fold(issued) == normalize_email(email)


def delivery_rows(
    conn: sa.Connection, email: str, ids: Sequence[str], reach: Reach = WHOLE_STORE
) -> list[Any]:
    """The webhook deliveries within ``reach`` (their app's) about one of ``ids`` (their
    payload's license) or mentioning ``email`` as a whole address, oldest first; ``[]``
    when the webhook tables do not exist."""
    if webhook_deliveries.name not in _present(conn):
        return []
    payload = webhook_deliveries.c.payload
    wanted = set(ids)
    clauses = [_may_mention(email, payload)]
    if len(ids) <= _LIKE_IDS:
        clauses += [payload.contains(i, autoescape=True) for i in ids]
    else:  # a bulk customer: their apps' deliveries, matched in Python
        app_ids = {
            row.app_id
            for batch in _batches(list(ids))
            for row in conn.execute(
                sa.select(licenses.c.app_id).where(licenses.c.id.in_(batch)).distinct()
            )
        }
        clauses.append(webhook_deliveries.c.app_id.in_(sorted(app_ids)))
    statement = (
        sa.select(webhook_deliveries)
        .where(sa.or_(*clauses), _in_reach(webhook_deliveries.c.app_id, reach))
        .order_by(webhook_deliveries.c.id)
    )
    pattern = address_pattern(email)
    found = []
    for row in conn.execute(statement):
        decoded = _payload(row.payload)
        if payload_is_about(decoded, wanted, email) or mentions(pattern, decoded):
            found.append(row)
    return found


def _redact_license(value: Any, drop: set[str], key: bytes) -> Any:
    """``value`` (JSON about one of the customer's licenses) with every ``issuedTo``
    nulled, the personal keys of every ``metadata`` object dropped, and every ``hwuid``
    pseudonymised."""
    if isinstance(value, list):
        return [_redact_license(v, drop, key) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k == "issuedTo":
            out[k] = None
        elif k == "hwuid" and isinstance(v, str):
            out[k] = device_pseudonym(key, v)
        elif k == "metadata" and isinstance(v, dict):
            out[k] = {mk: _redact_license(mv, drop, key) for mk, mv in v.items() if mk not in drop}
        else:
            out[k] = _redact_license(v, drop, key)
    return out


_encode_payload = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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


def _erase_licenses(
    conn: sa.Connection,
    ids: Sequence[str],
    pattern: re.Pattern[str],
    replacement: str,
    drop: set[str],
) -> None:
    """The customer's licenses: e-mail pseudonymised, name blanked, personal metadata
    keys dropped, the address inside the rest of the metadata replaced."""
    for batch in _batches(ids):
        conn.execute(
            sa.update(licenses)
            .where(licenses.c.id.in_(batch))
            .values(issued_email=replacement, issued_to=None)
        )
        for row in conn.execute(
            sa.select(licenses.c.id, licenses.c.meta).where(licenses.c.id.in_(batch))
        ).all():
            meta = dict(row.meta or {})
            kept = _scrub({k: v for k, v in meta.items() if k not in drop}, pattern, replacement)
            if kept != meta:
                conn.execute(sa.update(licenses).where(licenses.c.id == row.id).values(meta=kept))


def _erase_mentions_in_licenses(
    conn: sa.Connection, email: str, reach: Reach, replacement: str
) -> None:
    """Other licenses naming the address in their metadata, name or e-mail text (a license
    shared by two people): the address becomes the pseudonym (their own data stays)."""
    pattern = address_pattern(email)
    texts = (licenses.c.issued_to, licenses.c.issued_email)
    maybe = sa.or_(_may_mention(email, licenses.c.meta), *(_may_mention(email, c) for c in texts))
    statement = sa.select(licenses.c.id, licenses.c.meta, *texts).where(
        maybe, _in_reach(licenses.c.app_id, reach)
    )
    for row in conn.execute(statement).all():
        meta = row.meta
        values: dict[str, Any] = {}
        if meta is not None and (new_meta := _scrub(meta, pattern, replacement)) != meta:
            values["meta"] = new_meta
        for column in texts:
            text = getattr(row, column.name)
            if text is not None and (new_text := pattern.sub(replacement, text)) != text:
                values[column.name] = new_text
        if values:
            conn.execute(sa.update(licenses).where(licenses.c.id == row.id).values(values))


#: the seller's free-text columns, where a customer may be named (an API key made for her
#: support case): a store-wide erasure replaces her address there
_FREE_TEXT: Final = (
    (apps, "description"),
    (api_keys, "name"),
    (api_keys, "description"),
    (webhook_endpoints, "description"),
)


def _erase_free_text(conn: sa.Connection, email: str, replacement: str) -> None:
    pattern = address_pattern(email)
    present = _present(conn)
    for table, name in _FREE_TEXT:
        if table.name not in present:
            continue
        column = table.c[name]
        (pk,) = table.primary_key.columns
        for key, text in conn.execute(sa.select(pk, column).where(_may_mention(email, column))):
            if text is not None and (new_text := pattern.sub(replacement, text)) != text:
                conn.execute(sa.update(table).where(pk == key).values({name: new_text}))


def _erase_devices(conn: sa.Connection, ids: Sequence[str], key: bytes) -> int:
    """Every device of ``ids`` gets its hardware id's pseudonym; a device bound again
    after an earlier erasure is folded into the slot that pseudonym already holds."""
    count = 0
    for row in _about(conn, devices, "license_id", ids):
        alias = device_pseudonym(key, row.hwuid)
        if alias == row.hwuid:
            continue
        this = sa.and_(devices.c.license_id == row.license_id, devices.c.hwuid == row.hwuid)
        slot = sa.and_(devices.c.license_id == row.license_id, devices.c.hwuid == alias)
        earlier = conn.execute(sa.select(devices.c.last_seen_at).where(slot)).first()
        if earlier is None:
            conn.execute(sa.update(devices).where(this).values(hwuid=alias))
        else:
            conn.execute(sa.delete(devices).where(this))
            seen = max(earlier.last_seen_at, row.last_seen_at)
            conn.execute(sa.update(devices).where(slot).values(last_seen_at=seen))
        count += 1
    return count


def erase(
    conn: sa.Connection,
    email: str,
    *,
    key: bytes,
    personal_metadata_keys: Iterable[str] = (),
    reach: Reach = WHOLE_STORE,
) -> tuple[str, ErasureCounts]:
    """Erase ``email``'s personal data within ``reach`` (see the module docstring);
    returns the pseudonym and what was changed. Idempotent: a second run finds nothing to
    change."""
    replacement = pseudonym(key, email)
    pattern = address_pattern(email)
    ids = license_ids(conn, email, reach)
    drop = set(personal_metadata_keys)
    deliveries = delivery_rows(conn, email, ids, reach)  # before the licenses change
    events = audit_rows(conn, email, ids, reach)
    _erase_licenses(conn, ids, pattern, replacement, drop)
    _erase_mentions_in_licenses(conn, email, reach, replacement)
    if reach.store_wide:
        _erase_free_text(conn, email, replacement)
    device_count = _erase_devices(conn, ids, key)
    blanked = 0
    present = _present(conn)
    for entry in RETAINED:
        if entry.table.name not in present:
            continue
        names = (*entry.ips, *entry.user_agents, *entry.blank_together)
        columns: dict[str, Any] = {name: blank(entry.table.c[name]) for name in names}
        if entry.email is not None and entry.license_id is None:
            columns[entry.email] = replacement
        if not columns:
            continue
        for where in _personal_link(conn, entry, ids, email if reach.store_wide else None):
            blanked += conn.execute(sa.update(entry.table).where(where).values(columns)).rowcount
    # Chained events: blank the personal columns, which stay outside the MAC (store/audit.py),
    # so the chain still verifies. Events from before the chain (seq NULL): scrub their data.
    chained = [row.id for row in events if row.personal_salt is not None]
    legacy = [row for row in events if row.seq is None]
    scrubbed = 0
    for batch in _batches(chained):
        scrubbed += conn.execute(
            sa.update(audit_events)
            .where(audit_events.c.id.in_(batch))
            .values(actor_ip=None, actor_user_agent=None, personal=None, personal_salt=None)
        ).rowcount
    for row in legacy:
        data = json.loads(json.dumps(row.data))
        scrubbed_data = _scrub(data, pattern, replacement)
        if scrubbed_data != data:
            conn.execute(
                sa.update(audit_events)
                .where(audit_events.c.id == row.id)
                .values(data=scrubbed_data)
            )
            scrubbed += 1
    wanted = set(ids)
    rewritten = 0
    for row in deliveries:
        decoded = _payload(row.payload)
        if isinstance(decoded, str):  # not JSON: scrub the text itself
            new_payload = _scrub(row.payload, pattern, replacement)
        else:
            if payload_is_about(decoded, wanted, email):
                decoded = _redact_license(decoded, drop, key)
            new_payload = _encode_payload(_scrub(decoded, pattern, replacement))
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
    "WHOLE_STORE",
    "ErasureCounts",
    "Reach",
    "address_pattern",
    "audit_rows",
    "delivery_rows",
    "device_pseudonym",
    "erase",
    "fold",
    "license_ids",
    "mentioned",
    "mentions",
    "normalize_email",
    "payload_is_about",
    "personal_rows",
    "pseudonym",
]
