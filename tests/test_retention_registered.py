"""The columns that hold client IPs and user agents are registered for retention
(``LICENSECHAIN_RETENTION_DAYS_IP``), on SQLite and PostgreSQL: the audit log's personal
columns (blanked all together, as an erasure does, so ``audit verify`` still passes), console
sessions and failed console sign-ins. Rows older than the cut-off are reduced; newer rows
are kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain.console.repository import ConsoleRepository
from flask_licensechain.maintenance import run_maintenance
from flask_licensechain.store import Actor, Change
from flask_licensechain.store.schema import (
    audit_events,
    console_login_failures,
    console_sessions,
)

OLD_IP, NEW_IP = "203.0.113.7", "198.51.100.9"


@pytest.fixture(params=["sqlite", "postgres"])
def issuer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Issuer]:
    url = f"sqlite:///{tmp_path / 'reg.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    made = make_issuer(tmp_path, url)
    yield made
    close_issuer(made)


def note(issuer: Issuer, ip: str, agent: str) -> None:
    actor = Actor(kind="system", id="support", ip=ip, user_agent=agent)
    with issuer.store.unit_of_work(actor) as unit:
        unit.record(Change(action="test.note", personal={"name": f"caller from {ip}"}))


def rows(issuer: Issuer, table: sa.Table, *columns: str) -> list[tuple[Any, ...]]:
    with issuer.store.engine.connect() as conn:
        selected = sa.select(*(table.c[c] for c in columns)).order_by(*table.primary_key)
        return [tuple(row) for row in conn.execute(selected)]


def test_old_personal_columns_are_reduced_and_the_chain_still_verifies(issuer: Issuer) -> None:
    console = ConsoleRepository(issuer.store.database)
    now = datetime.now(UTC)
    user = console.create_user(email="op@example.test", display_name="Op", role="admin", now=now)
    old_at = now - timedelta(days=200)
    console.create_session(
        "a" * 64,
        user_id=user.id,
        stage="full",
        now=old_at,
        mfa_at=None,
        ip=OLD_IP,
        user_agent="OldBrowser/1",
    )
    console.record_failure("op@example.test", OLD_IP, old_at)
    console.record_failure("op@example.test", "not-an-ip", old_at)
    note(issuer, OLD_IP, "OldClient/1")
    cutoff = datetime.now(UTC)  # what follows is newer
    now = datetime.now(UTC)
    console.create_session(
        "b" * 64,
        user_id=user.id,
        stage="full",
        now=now,
        mfa_at=None,
        ip=NEW_IP,
        user_agent="NewBrowser/2",
    )
    console.record_failure("op@example.test", NEW_IP, now)
    note(issuer, NEW_IP, "NewClient/2")

    # the audit events are "old" relative to a run 90 days after the cut-off
    report = run_maintenance(issuer.state, now=cutoff + timedelta(days=90))
    assert report.retention["lc_audit_events.actor_ip"] >= 1
    assert report.retention["lc_console_sessions.ip"] == 1
    assert report.retention["lc_console_login_failures.ip"] == 2

    events = [
        r
        for r in rows(
            issuer,
            audit_events,
            "action",
            "actor_ip",
            "actor_user_agent",
            "personal",
            "personal_salt",
        )
        if r[0] == "test.note"
    ]
    assert events[0][1:] == (None, None, None, None)  # blanked together, as an erasure does
    assert events[1][1:4] == (NEW_IP, "NewClient/2", {"name": f"caller from {NEW_IP}"})
    assert events[1][4] is not None
    assert issuer.store.audit.verify().ok
    assert rows(issuer, console_sessions, "ip", "user_agent") == [
        ("203.0.113.0", None),
        (NEW_IP, "NewBrowser/2"),
    ]
    assert rows(issuer, console_login_failures, "ip") == [("203.0.113.0",), ("",), (NEW_IP,)]

    again = run_maintenance(issuer.state, now=cutoff + timedelta(days=90))
    assert set(again.retention.values()) == {0}, again.retention
    assert issuer.store.audit.verify().ok


def test_the_console_tables_are_reached_without_the_console() -> None:
    """A process that never imports the console (the CLI of an app without it) still
    reduces and erases the console tables' IPs and e-mails: they are the store's tables."""
    import subprocess
    import sys

    script = (
        # without the console extra: flask-wtf cannot be imported, so the console is not
        "import sys; sys.modules['flask_wtf'] = None;"
        "import flask_licensechain, flask_licensechain.store.customers;"
        "import flask_licensechain.store.retention as r;"
        "assert 'flask_licensechain.console' not in sys.modules, 'console imported';"
        "print(sorted(e.table.name for e in r.RETAINED))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "lc_console_login_failures" in found and "lc_console_sessions" in found
    assert "lc_api_keys" in found and "lc_audit_events" in found
