"""API-key revocation and rotation across real gunicorn workers.

A key is checked against the store on every request (nothing is cached per process), so the
revocation bound is the commit itself: once ``POST /v1/api-keys/<id>/revoke`` has answered,
no worker accepts the key, well inside the contract's 100 ms (Redis) and 1 s (no Redis).
Each test warms every worker with the key, revokes or rotates it through one worker, then
samples every worker on fresh connections until each has refused it: never a 200.

The gunicorn harness is tests/test_revocation_processes.py's ``issuer_server``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from test_revocation_processes import CLIENTS, Issuer, issuer_server

pytestmark = [pytest.mark.slow]


def admin_call(issuer: Issuer, key: str) -> tuple[int, int]:
    """(status, worker pid) of ``GET /v1/apps`` with ``key`` on a fresh connection."""
    response = httpx.get(
        f"{issuer.url}/v1/apps", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return response.status_code, int(response.headers["X-Worker-PID"])


def burst(issuer: Issuer, key: str, count: int) -> list[tuple[int, int]]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda _: admin_call(issuer, key), range(count)))


def refused_by_every_worker(issuer: Issuer, key: str) -> None:
    """Sample at once, until every worker has refused ``key``: any 200 fails."""
    refused: set[int] = set()
    deadline = time.monotonic() + 60
    while len(refused) < issuer.workers:
        assert time.monotonic() < deadline, f"only workers {sorted(refused)} refused"
        for status, pid in burst(issuer, key, 24):
            assert status == 401, (status, pid)
            refused.add(pid)


def warm(issuer: Issuer, key: str) -> None:
    answers = burst(issuer, key, 40)
    assert {status for status, _ in answers} == {200}
    assert len({pid for _, pid in answers}) >= 2


def create_key(issuer: Issuer) -> tuple[str, str]:
    response = issuer.admin("POST", "/api-keys", {"name": "doomed", "scopes": ["apps:read"]})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["key"]


def test_revoked_and_rotated_keys_die_in_every_worker_without_redis(tmp_path: Path) -> None:
    with issuer_server(tmp_path, workers=4) as issuer:
        key_id, secret = create_key(issuer)
        warm(issuer, secret)
        response = issuer.admin("POST", f"/api-keys/{key_id}/revoke", {})
        assert response.status_code == 200, response.text
        refused_by_every_worker(issuer, secret)

        key_id, secret = create_key(issuer)
        warm(issuer, secret)
        rotated = issuer.admin("POST", f"/api-keys/{key_id}/rotate", {"gracePeriodSeconds": 0})
        assert rotated.status_code == 200, rotated.text
        refused_by_every_worker(issuer, secret)
        new = rotated.json()["key"]
        assert {status for status, _ in burst(issuer, new, 24)} == {200}


def test_revoked_key_dies_in_every_worker_with_postgres_and_redis(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with issuer_server(
        tmp_path, workers=2, database_url=postgres_url, redis_url=redis_url
    ) as issuer:
        key_id, secret = create_key(issuer)
        warm(issuer, secret)
        response = issuer.admin("POST", f"/api-keys/{key_id}/revoke", {})
        assert response.status_code == 200, response.text
        refused_by_every_worker(issuer, secret)
