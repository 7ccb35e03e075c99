"""Retention of client IP addresses and user agents: past ``LICENSECHAIN_RETENTION_DAYS_IP``
days (default 90) a stored IP is truncated to its network and a stored user agent erased.

A module that stores IPs or user agents registers the columns once, at import, beside its
table, naming the column that dates each row::

    register_retention(audit_actors, timestamp="created_at", ips=("ip",),
                       user_agents=("user_agent",), license_id="license_id")

``license_id`` (optional) names the column linking a row to a license: a customer's export
includes those rows and an erasure blanks them (``store/customers.py``). ``email``
(optional) names a column holding the e-mail address a row is about (a console sign-in
failure): a whole-store export includes the rows of the customer's address, and an erasure
blanks their IPs and user agents and replaces the address by the customer's pseudonym.

``blank_together`` (optional) names columns that must be blanked with the IPs and user
agents, all at once, because a digest covers them together: then an old row's IPs are
erased (not truncated) and those columns set to NULL. The audit log registers its personal
columns so (``actor_ip``, ``actor_user_agent``, ``personal``, ``personal_salt``: what
``AuditRepository.erase_personal`` blanks), so ``audit verify`` still passes.

Registered today: ``lc_audit_events`` (``store/audit.py``), ``lc_api_keys`` (the last
client IP, ``store/api_keys.py``), ``lc_console_sessions`` and ``lc_console_login_failures``
(below: the console's tables, reached whether the console is on or not). Webhook attempts
store no IP or user agent.

``apply_retention(db, older_than=...)`` is the job; ``flask licensechain maintenance run``
runs it (daily from cron), and so may a long-running worker.

What is kept: an IPv4 address becomes its /24 network (``203.0.113.7`` -> ``203.0.113.0``),
an IPv6 address its /48 (``2001:db8:1:2::5`` -> ``2001:db8:1::``), as the IP anonymisation
of common analytics tools; a value that is not an IP address is erased. A user agent becomes
NULL. Both keep the row and its non-personal facts. The job is idempotent: it reads the rows
older than the cut-off that hold an IP and writes only those not reduced yet.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from .database import Database
from .schema import console_login_failures, console_sessions, to_utc

_IPV4_PREFIX: Final = 24
_IPV6_PREFIX: Final = 48


@dataclass(frozen=True)
class RetainedColumns:
    """Personal columns of ``table`` dated by ``timestamp`` (a timezone-aware column);
    ``license_id``: the column naming the license a row is about, if any."""

    table: sa.Table
    timestamp: str
    ips: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()
    license_id: str | None = None
    blank_together: tuple[str, ...] = ()
    email: str | None = None


#: Every registered table, in registration order.
RETAINED: list[RetainedColumns] = []


def register_retention(
    table: sa.Table,
    *,
    timestamp: str,
    ips: tuple[str, ...] = (),
    user_agents: tuple[str, ...] = (),
    license_id: str | None = None,
    blank_together: tuple[str, ...] = (),
    email: str | None = None,
) -> RetainedColumns:
    """Declare columns holding client IPs or user agents (idempotent per table).

    :raises KeyError: a column the table does not have.
    """
    links = [name for name in (license_id, email) if name]
    named = (timestamp, *ips, *user_agents, *blank_together, *links)
    for name in named:
        table.c[name]  # a typo fails at import
    for known in RETAINED:
        if known.table.name == table.name:
            return known
    entry = RetainedColumns(
        table, timestamp, tuple(ips), tuple(user_agents), license_id, tuple(blank_together), email
    )
    RETAINED.append(entry)
    return entry


def blank(column: sa.Column[Any]) -> Any:
    """What an erased value of ``column`` becomes: NULL, or ``""`` where NULL is refused."""
    return None if column.nullable else ""


def truncate_ip(value: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network address of ``value``; ``None`` if it is not an
    IP address. An IPv4-mapped IPv6 address is treated as IPv4."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = _IPV4_PREFIX if address.version == 4 else _IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def apply_retention(db: Database, *, older_than: datetime) -> dict[str, int]:
    """Reduce the IPs and user agents of rows dated before ``older_than``.

    Returns ``{"table.column": rows changed}`` for every registered column whose table
    exists. One transaction per table.

    :raises Unavailable: the store is down.
    """
    cutoff = to_utc(older_than)
    changed: dict[str, int] = {}
    with db.read() as conn:
        present = set(sa.inspect(conn).get_table_names())
    for entry in RETAINED:
        if entry.table.name not in present:
            continue
        table = entry.table
        pk = list(table.primary_key.columns)
        with db.write() as conn:
            old = table.c[entry.timestamp] < cutoff
            if entry.blank_together:
                names = (*entry.ips, *entry.user_agents, *entry.blank_together)
                # A JSON column blanked through the ORM may hold JSON null, not SQL NULL:
                # only the other columns tell whether a row is still to blank.
                plain = [n for n in names if not isinstance(table.c[n].type, sa.JSON)]
                held = sa.or_(*(table.c[name].is_not(None) for name in plain))
                result = conn.execute(
                    sa.update(table).where(old, held).values({n: sa.null() for n in names})
                )
                for name in (*entry.ips, *entry.user_agents):
                    changed[f"{table.name}.{name}"] = result.rowcount
                continue
            for name in entry.user_agents:
                col = table.c[name]
                result = conn.execute(
                    sa.update(table).where(old, col.is_not(None)).values({col: None})
                )
                changed[f"{table.name}.{name}"] = result.rowcount
            for name in entry.ips:
                col = table.c[name]
                rows = conn.execute(sa.select(*pk, col).where(old, col.is_not(None))).all()
                count = 0
                for row in rows:
                    value: Any = getattr(row, name)
                    reduced = truncate_ip(str(value))
                    if reduced is None:
                        reduced = blank(col)
                    if reduced == value:
                        continue
                    match = sa.and_(*(c == getattr(row, c.name) for c in pk))
                    conn.execute(sa.update(table).where(match).values({col: reduced}))
                    count += 1
                changed[f"{table.name}.{name}"] = count
    return changed


# The console's tables are the store's (schema.py), whether or not this process serves the
# console: the retention job and an erasure reach them from the CLI too. A session's IP and
# user agent are dated by its last use; a failed sign-in's IP by the failure.
register_retention(
    console_sessions, timestamp="last_seen_at", ips=("ip",), user_agents=("user_agent",)
)
register_retention(console_login_failures, timestamp="created_at", ips=("ip",), email="email")


__all__ = [
    "RETAINED",
    "RetainedColumns",
    "apply_retention",
    "blank",
    "register_retention",
    "truncate_ip",
]
