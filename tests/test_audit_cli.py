"""``flask licensechain audit verify|prune``: exit 0 with the count on an intact chain, exit 1
naming the first broken event (``--json`` too); prune leaves a checkpoint verify accepts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain.store.schema import audit_events


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    try:
        yield made
    finally:
        close_issuer(made)


def run(issuer: Issuer, *args: str) -> Result:
    return issuer.app.test_cli_runner().invoke(args=["licensechain", *args])


def run_json(issuer: Issuer, *args: str, exit_code: int = 0) -> dict[str, Any]:
    result = run(issuer, *args, "--json")
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


#: events a fresh issuer already holds: its first signing key (``signing_key.create``)
AT_START = 1


def make_events(issuer: Issuer, n: int) -> None:
    for i in range(n):
        assert run(issuer, "create-app", "--name", f"App {i}").exit_code == 0


def test_verify_an_intact_chain(issuer: Issuer) -> None:
    make_events(issuer, 3)
    result = run(issuer, "audit", "verify")
    assert result.exit_code == 0
    assert f"{AT_START + 3} event(s) verified" in result.stdout
    data = run_json(issuer, "audit", "verify")
    assert (data["ok"], data["count"], data["broken"]) == (True, AT_START + 3, None)


def test_verify_names_the_first_broken_event(issuer: Issuer) -> None:
    make_events(issuer, 4)
    with issuer.store.engine.begin() as conn:
        conn.execute(sa.update(audit_events).where(audit_events.c.seq == 2).values(target="x"))
        conn.execute(sa.delete(audit_events).where(audit_events.c.seq == 3))
    result = run(issuer, "audit", "verify")
    assert result.exit_code == 1
    assert "event 2" in result.stderr and "edited" in result.stderr
    data = run_json(issuer, "audit", "verify", exit_code=1)
    assert data["ok"] is False and data["count"] == 1
    assert (data["broken"]["seq"], data["broken"]["breach"]) == (2, "edited")


def test_prune_leaves_a_checkpoint(issuer: Issuer) -> None:
    make_events(issuer, 3)
    time.sleep(0.01)
    cutoff = datetime.now(UTC).isoformat()
    make_events(issuer, 1)
    data = run_json(issuer, "audit", "prune", "--before", cutoff)
    pruned = AT_START + 3
    assert (data["pruned"], data["checkpointSeq"]) == (pruned, pruned)
    verified = run_json(issuer, "audit", "verify")
    assert (verified["ok"], verified["count"], verified["checkpointSeq"]) == (True, 2, pruned)
    newest = issuer.store.audit.list()[0]
    assert (newest.action, newest.actor_kind) == ("audit.prune", "cli")
    assert newest.data["pruned"] == pruned


def test_prune_refuses_a_bad_date_and_a_broken_chain(issuer: Issuer) -> None:
    make_events(issuer, 2)
    bad = run_json(issuer, "audit", "prune", "--before", "soon", exit_code=1)
    assert bad["error"] == "invalid_request"
    with issuer.store.engine.begin() as conn:
        conn.execute(sa.update(audit_events).where(audit_events.c.seq == 1).values(action="x"))
    refused = run_json(issuer, "audit", "prune", "--before", "2999-01-01", exit_code=1)
    assert "does not verify" in refused["message"]
    assert len(issuer.store.audit.list()) == AT_START + 2
