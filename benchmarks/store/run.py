"""The store's verify hot path: ``LicenseRepository.find_for_verification``.

Side by side, in one run, on SQLite (a file, WAL) and PostgreSQL (when reachable):
- *driver floor*: the same compiled SQL on a raw DBAPI cursor, rows left unprocessed;
- *Core path*: the same statement through ``Connection.execute(...).all()``;
- *store*: ``find_for_verification`` (records built, devices included);
- *bind (known, recent)*: ``bind_device`` for a device seen within the last minute;
- and one RSA-2048 PKCS#1 v1.5 SHA-256 signature with ``cryptography``, the budget's unit.

    .venv/bin/python benchmarks/store/run.py [--calls 20000] [--rounds 5] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flask_licensechain.store import Store, open_store
from flask_licensechain.store.licenses import _FOR_VERIFICATION

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import Timing, add_postgres, add_rounds, create_database, median, per_call_us

LICENSES = 500


def median_us(fn: Callable[[int], Any], calls: int, rounds: int) -> Timing:
    """Median over rounds of the wall time and of this process's CPU time per call, in µs.

    On a shared machine the CPU time is the steadier figure; for PostgreSQL it leaves out
    the server's own work, which the wall time includes.
    """
    return median([per_call_us(fn, calls) for _ in range(rounds)])


def seed(store: Store) -> tuple[list[str], list[str]]:
    store.upgrade_schema()
    app = store.apps.create("Bench", tier="pro")
    keys, ids = [], []
    now = datetime.now(UTC)
    for n in range(LICENSES):
        lic = store.licenses.create(
            app.id, plan="pro", features=["export", "sync"], metadata={"n": n}, max_devices=3
        )
        for d in range(n % 3):  # 0, 1 or 2 devices
            store.licenses.bind_device(lic.id, f"hw-{d}", now)
        keys.append(lic.key)
        ids.append(lic.id)
    return keys, ids


def measure(store: Store, calls: int, rounds: int) -> dict[str, Timing]:
    keys, ids = seed(store)
    n = len(keys)
    engine = store.engine
    compiled = _FOR_VERIFICATION.compile(dialect=engine.dialect)
    sql = str(compiled)
    raw = engine.raw_connection()
    if engine.dialect.name == "postgresql":
        raw.dbapi_connection.autocommit = True  # type: ignore[union-attr]
    params: Callable[[str], Any] = (
        (lambda key: (key,)) if compiled.positional else (lambda key: {"key": key})
    )
    cursor = raw.cursor()

    def floor(i: int) -> None:
        cursor.execute(sql, params(keys[i % n]))
        cursor.fetchall()

    def core(i: int) -> None:
        with engine.connect() as conn:
            conn.execute(_FOR_VERIFICATION, {"key": keys[i % n]}).all()

    def store_path(i: int) -> None:
        store.licenses.find_for_verification(keys[i % n])

    bound_index = [i for i in range(n) if i % 3][: max(1, n // 2)]
    now = datetime.now(UTC)

    def bind_known(i: int) -> None:
        store.licenses.bind_device(ids[bound_index[i % len(bound_index)]], "hw-0", now)

    for fn in (floor, core, store_path, bind_known):
        fn(0)
    results = {
        "driver floor (raw cursor)": median_us(floor, calls, rounds),
        "Core path (Connection.execute)": median_us(core, calls, rounds),
        "store.find_for_verification": median_us(store_path, calls, rounds),
        "store.bind_device (known, recent)": median_us(bind_known, calls, rounds),
    }
    cursor.close()
    if engine.dialect.name == "postgresql":
        raw.dbapi_connection.autocommit = False  # type: ignore[union-attr]
    raw.close()
    return results


def rsa_signature_us(calls: int, rounds: int) -> Timing:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = b"x" * 600

    def sign(_: int) -> None:
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    return median_us(sign, max(1, calls // 10), rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    add_rounds(parser, 5)
    add_postgres(parser)
    args = parser.parse_args()

    columns: dict[str, dict[str, Timing]] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        columns["SQLite"] = measure(store, args.calls, args.rounds)
        store.dispose()
    database = create_database(args.postgres) if args.postgres else None
    if database is not None:
        url, drop = database
        store = open_store(url)
        try:
            # A network round trip costs far more than a file read: fewer calls will do.
            columns["PostgreSQL"] = measure(store, max(1, args.calls // 10), args.rounds)
        finally:
            store.dispose()
            drop()
    signature = rsa_signature_us(args.calls, args.rounds)

    names = list(columns)
    header = " | ".join(f"{name} wall | {name} CPU" for name in names)
    print(f"| µs per call (median of {args.rounds}) | {header} |")
    print("|---|" + "---:|" * (2 * len(names)))
    for row in next(iter(columns.values())):
        cells = " | ".join(f"{columns[n][row][0]:.1f} | {columns[n][row][1]:.1f}" for n in names)
        print(f"| {row} | {cells} |")
    print(f"| one RSA-2048 signature | {signature[0]:.1f} | {signature[1]:.1f} |")


if __name__ == "__main__":
    main()
