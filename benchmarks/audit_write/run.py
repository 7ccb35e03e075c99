"""What the audit write adds to an admin write: ``PATCH /v1/licenses/<id>``.

Side by side, interleaved round by round, on SQLite (a file, WAL) and PostgreSQL (a database
made for the run and dropped after), through Flask's test client (API-key check, JSON
parsing, the service layer, the response):

- *no audit listener*: the unit of work with its listeners removed (the change alone);
- *audit (hash chain)*: as shipped: the event, its HMAC chain link and the head update;
- *audit, SAVEPOINT per write*: as shipped, but every repository write inside the unit is a
  ``SAVEPOINT``/``RELEASE`` of it, as ``Database.write`` did first (what savepoints cost;
  now only the repositories that retry ask for one).

    .venv/bin/python benchmarks/audit_write/run.py [--calls 50] [--rounds 30] [--postgres URL]
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from flask_licensechain import IssuerState, LicenseChain
from flask_licensechain.store.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import (
    Timing,
    add_postgres,
    add_rounds,
    create_database,
    medians,
    per_call_us,
    round_order,
)

ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
VARIANTS = ("no audit listener", "audit (hash chain)", "audit, SAVEPOINT per write")


@contextmanager
def savepoint_per_write() -> Iterator[None]:
    """Every ``Database.write`` inside a unit is a savepoint of it."""
    original = Database.write

    def write(self: Database, *, savepoint: bool = False) -> Any:
        return original(self, savepoint=True)

    Database.write = write  # type: ignore[method-assign]
    try:
        yield
    finally:
        Database.write = original  # type: ignore[method-assign]


class Server:
    def __init__(self, name: str, url: str, instance: Path) -> None:
        self.name = name
        app = Flask("bench", instance_path=str(instance))
        app.testing = True
        LicenseChain(app, database_url=url, encryption_key=ENCRYPTION_KEY, ratelimit_enabled=False)
        self.state: IssuerState = app.extensions["licensechain"]
        store = self.state.store
        self.listeners = store.changes._listeners
        _, key = store.api_keys.create("bench", ["*"])
        self.headers = {"Authorization": f"Bearer {key}"}
        application = store.apps.create("Bench", tier="pro")
        self.license_ids = [store.licenses.create(application.id).id for _ in range(50)]
        self.client = app.test_client()
        self.counter = 0

    def patch(self, _: int) -> None:
        self.counter += 1
        lid = self.license_ids[self.counter % len(self.license_ids)]
        response = self.client.patch(
            f"/v1/licenses/{lid}", json={"metadata": {"n": self.counter}}, headers=self.headers
        )
        assert response.status_code == 200, response.get_json()

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        store = self.state.store
        if name == "no audit listener":
            store.changes._listeners = ()
            try:
                yield
            finally:
                store.changes._listeners = self.listeners
        elif name == "audit, SAVEPOINT per write":
            with savepoint_per_write():
                yield
        else:
            yield

    def close(self) -> None:
        self.state.store.dispose()
        self.state.denylist.close()


def measure(server: Server, calls: int, rounds: int) -> dict[str, Timing]:
    """Median wall and CPU µs per request of each variant, rounds interleaved."""
    for name in VARIANTS:  # warm up: compiled caches, pool
        with server.variant(name):
            per_call_us(server.patch, max(1, calls // 10))
    samples: dict[str, list[Timing]] = {name: [] for name in VARIANTS}
    for number in range(rounds):  # many short rounds, the order reversed every other one
        for name in round_order(VARIANTS, number):
            with server.variant(name):
                samples[name].append(per_call_us(server.patch, calls))
    assert server.state.store.audit.verify().ok
    return medians(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    add_rounds(parser, 30)
    add_postgres(parser)
    args = parser.parse_args()

    columns: dict[str, dict[str, Timing]] = {}
    with tempfile.TemporaryDirectory() as folder:
        server = Server("SQLite", f"sqlite:///{Path(folder) / 'bench.db'}", Path(folder))
        try:
            columns["SQLite"] = measure(server, args.calls, args.rounds)
        finally:
            server.close()
        database = create_database(args.postgres) if args.postgres else None
        if database is not None:
            url, drop = database
            server = Server("PostgreSQL", url, Path(folder))
            try:
                columns["PostgreSQL"] = measure(server, args.calls, args.rounds)
            finally:
                server.close()
                drop()

    names = list(columns)
    print(f"PATCH /v1/licenses/<id>, µs per request (median of {args.rounds} rounds)")
    heads = " | ".join(f"{n} wall | ratio | {n} CPU | ratio" for n in names)
    print(f"| variant | {heads} |")
    print("|---|" + "---:|" * (4 * len(names)))
    for variant in VARIANTS:
        cells = []
        for n in names:
            base_wall, base_cpu = columns[n]["no audit listener"]
            wall, cpu = columns[n][variant]
            cells.append(f"{wall:.0f} | {wall / base_wall:.2f} | {cpu:.0f} | {cpu / base_cpu:.2f}")
        print(f"| {variant} | " + " | ".join(cells) + " |")
    for n in names:
        for index, kind in ((0, "wall"), (1, "CPU")):
            base = columns[n]["no audit listener"][index]
            audited = columns[n]["audit (hash chain)"][index]
            savepoints = columns[n]["audit, SAVEPOINT per write"][index]
            print(
                f"{n} ({kind}): the audit write adds {audited / base - 1:+.1%}; "
                f"a SAVEPOINT per write would add {savepoints / audited - 1:+.1%} more"
            )


if __name__ == "__main__":
    main()
