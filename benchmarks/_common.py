"""What the benchmark runners share: their options, a PostgreSQL database of their own,
interleaved timing rounds, percentiles and the target lines they print.

A runner is started as a script (``.venv/bin/python benchmarks/<name>/run.py``), so its own
folder, not ``benchmarks/``, is on ``sys.path``; it imports this module with::

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from _common import ...  # noqa: E402

Only loopback servers are used: the default PostgreSQL server is the tests' one, on which a
runner creates a database of its own (``lc_bench_<hex>``) and drops it afterwards; the
server's ``test`` database is only the place the admin connection logs in to.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

Timing = tuple[float, float]
"""Wall time and this process's CPU time, in µs per call."""


# -- options --------------------------------------------------------------------------------


def add_rounds(parser: argparse.ArgumentParser, default: int, help: str | None = None) -> None:
    """``--rounds N``: how many interleaved rounds (the runner says what it keeps of them)."""
    parser.add_argument("--rounds", type=int, default=default, help=help)


def add_postgres(parser: argparse.ArgumentParser, default: str = DEFAULT_POSTGRES) -> None:
    """``--postgres URL``: the server a database is created on for the run; '' skips it."""
    parser.add_argument("--postgres", default=default)


# -- a PostgreSQL database of the run's own -------------------------------------------------


def create_database(server_url: str) -> tuple[str, Callable[[], None]] | None:
    """Create ``lc_bench_<hex>`` on the server of ``server_url`` (a ``postgresql://`` URL
    whose database is only used to log in): its URL and the function that drops it, or
    None when the server cannot be reached (``sqlalchemy.exc.OperationalError``)."""
    admin = sa.create_engine(
        server_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    name = "lc_bench_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        print(f"(PostgreSQL skipped: {str(exc).splitlines()[0]})", file=sys.stderr)
        admin.dispose()
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{server_url.rsplit('/', 1)[0]}/{name}", drop


@contextmanager
def postgres_database(server_url: str) -> Iterator[str | None]:
    """``create_database`` as a context: the new database's URL, dropped on exit; None
    when ``server_url`` is empty or the server cannot be reached."""
    database = create_database(server_url) if server_url else None
    if database is None:
        yield None
        return
    url, drop = database
    try:
        yield url
    finally:
        drop()


# -- timing ---------------------------------------------------------------------------------


def per_call_us(fn: Callable[[int], Any], calls: int) -> Timing:
    """Wall time and this process's CPU time per call of ``fn(i)``, ``i`` in
    ``range(calls)``, in µs. On a shared machine the CPU time is the steadier figure; for a
    server in another process (PostgreSQL, Redis) it leaves out the server's own work."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        fn(i)
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


def round_order(names: Sequence[str], number: int) -> Sequence[str]:
    """The order of the compared setups in round ``number`` (from 0): reversed in every
    other round, starting reversed. The load of a shared machine drifts, and a fixed order
    would bill the drift to one setup."""
    return names if number % 2 else tuple(reversed(names))


def median(samples: Sequence[Timing]) -> Timing:
    """The median wall time and the median CPU time of ``samples`` (one a round)."""
    return (
        statistics.median(wall for wall, _ in samples),
        statistics.median(cpu for _, cpu in samples),
    )


def medians(samples: dict[str, list[Timing]]) -> dict[str, Timing]:
    """``median`` of each setup's rounds."""
    return {name: median(values) for name, values in samples.items()}


def side_by_side(
    setups: dict[str, Callable[[int], Any]], calls: int, rounds: int
) -> dict[str, Timing]:
    """Median wall and CPU µs per call of each setup over ``rounds`` interleaved rounds of
    ``calls`` calls (``round_order``)."""
    samples: dict[str, list[Timing]] = {name: [] for name in setups}
    for number in range(rounds):
        for name in round_order(tuple(setups), number):
            samples[name].append(per_call_us(setups[name], calls))
    return medians(samples)


# -- what is printed ------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def check(what: str, ok: bool, figure: str) -> None:
    """Print a target line: ``- target: <what>: MET|MISSED (<figure>)``."""
    print(f"- target: {what}: {'MET' if ok else 'MISSED'} ({figure})")


def latency_table(latencies_ms: Sequence[float], missed: int) -> None:
    """Print p50, p90, p99 and max of ``latencies_ms`` and the ``missed`` count as a
    Markdown table, then a blank line."""
    print("| p50 ms | p90 ms | p99 ms | max ms | missed |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {statistics.median(latencies_ms):.2f} | {pct(latencies_ms, 90):.2f} | "
        f"{pct(latencies_ms, 99):.2f} | {max(latencies_ms):.2f} | {missed} |"
    )
    print()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
