"""Retention of client IPs and user agents (``LICENSECHAIN_RETENTION_DAYS_IP``) through
``flask licensechain maintenance run``, on SQLite and PostgreSQL: rows older than the cut-off
keep their facts but lose the host part of the IP and the user agent; newer rows are kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain.core.errors import ConfigError
from flask_licensechain.store.retention import RETAINED, register_retention, truncate_ip
from flask_licensechain.store.schema import UTCDateTime


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.7", "203.0.113.0"),
        ("203.0.113.0", "203.0.113.0"),
        ("2001:db8:1:2::5", "2001:db8:1::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        (" 10.1.2.3 ", "10.1.2.0"),
        ("not an ip", None),
        ("", None),
    ],
)
def test_truncate_ip(value: str, expected: str | None) -> None:
    assert truncate_ip(value) == expected


visits = sa.Table(
    "lc_test_visits",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("license_id", sa.String(40)),
    sa.Column("ip", sa.Text),
    sa.Column("user_agent", sa.Text),
    sa.Column("seen_at", UTCDateTime, nullable=False),
)


@pytest.fixture
def registered() -> Iterator[None]:
    entry = register_retention(
        visits, timestamp="seen_at", ips=("ip",), user_agents=("user_agent",)
    )
    try:
        yield
    finally:
        RETAINED.remove(entry)


@pytest.fixture(params=["sqlite", "postgres"])
def issuer(request: pytest.FixtureRequest, tmp_path: Path, registered: None) -> Iterator[Issuer]:
    url = f"sqlite:///{tmp_path / 'ret.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    made = make_issuer(tmp_path, url)
    yield made
    close_issuer(made)


def fill(issuer: Issuer) -> None:
    now = datetime.now(UTC)
    rows = [
        (1, "203.0.113.7", "Client/1.0 (Linux)", now - timedelta(days=200)),
        (2, "2001:db8:1:2::5", "Client/1.0 (Mac)", now - timedelta(days=91)),
        (3, "bogus", None, now - timedelta(days=120)),
        (4, "198.51.100.9", "Client/2.0", now - timedelta(days=89)),  # inside 90 days
        (5, "192.0.2.44", "Client/2.0", now - timedelta(days=1)),
    ]
    with issuer.store.engine.begin() as conn:
        visits.create(conn)
        conn.execute(
            sa.insert(visits),
            [
                {"id": i, "license_id": "lic_1", "ip": ip, "user_agent": ua, "seen_at": at}
                for i, ip, ua, at in rows
            ],
        )


def table(issuer: Issuer) -> dict[int, tuple[Any, ...]]:
    with issuer.store.engine.connect() as conn:
        rows = conn.execute(sa.select(visits).order_by(visits.c.id)).all()
    return {row.id: (row.license_id, row.ip, row.user_agent) for row in rows}


def run(issuer: Issuer, *args: str) -> dict[str, Any]:
    result = issuer.app.test_cli_runner().invoke(args=["licensechain", *args, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_maintenance_run_reduces_old_ips_and_user_agents(issuer: Issuer) -> None:
    fill(issuer)
    report = run(issuer, "maintenance", "run")
    assert report["retentionDaysIp"] == 90
    assert {k: v for k, v in report["retention"].items() if "lc_test" in k} == {
        "lc_test_visits.user_agent": 2,
        "lc_test_visits.ip": 3,
    }
    assert table(issuer) == {
        1: ("lic_1", "203.0.113.0", None),
        2: ("lic_1", "2001:db8:1::", None),
        3: ("lic_1", None, None),
        4: ("lic_1", "198.51.100.9", "Client/2.0"),
        5: ("lic_1", "192.0.2.44", "Client/2.0"),
    }
    again = run(issuer, "maintenance", "run")
    assert set(again["retention"].values()) == {0}


def test_the_retention_period_is_configurable(tmp_path: Path, registered: None) -> None:
    short = make_issuer(tmp_path, f"sqlite:///{tmp_path / 's.db'}", retention_days_ip=30)
    fill(short)
    report = run(short, "maintenance", "run")
    assert report["retention"]["lc_test_visits.user_agent"] == 3  # 200, 91 and 89 days old
    assert table(short)[4] == ("lic_1", "198.51.100.0", None)
    assert table(short)[5] == ("lic_1", "192.0.2.44", "Client/2.0")
    close_issuer(short)


@pytest.mark.parametrize("value", [0, -1, "soon", 1.5])
def test_a_bad_retention_period_is_refused(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match="LICENSECHAIN_RETENTION_DAYS_IP"):
        make_issuer(tmp_path, f"sqlite:///{tmp_path / 'b.db'}", retention_days_ip=value)


def test_maintenance_without_registered_tables_reports_nothing(tmp_path: Path) -> None:
    plain = make_issuer(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    report = run(plain, "maintenance", "run")
    assert report["retiredSigningKeys"] == 0
    assert "lc_test_visits.ip" not in report["retention"]
    close_issuer(plain)
