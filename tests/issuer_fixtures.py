"""Fixtures of the issuer/API tests (a pytest plugin: ``pytest_plugins = ["issuer_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from issuer_support import Issuer, close_issuer, make_issuer


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store-sensitive test runs on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'licensechain.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def issuer(tmp_path: Path, database_url: str) -> Iterator[Issuer]:
    made = make_issuer(tmp_path, database_url)
    try:
        yield made
    finally:
        close_issuer(made)


@pytest.fixture
def sqlite_issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    try:
        yield made
    finally:
        close_issuer(made)


@pytest.fixture(params=["memory", "redis"])
def denylisted_issuer(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> Iterator[Issuer]:
    """Revocation runs with the in-process denylist and with Redis, on both stores."""
    options: dict[str, Any] = {}
    if request.param == "redis":
        options["denylist_url"] = request.getfixturevalue("redis_url")
    made = make_issuer(tmp_path, database_url, **options)
    try:
        yield made
    finally:
        close_issuer(made)
