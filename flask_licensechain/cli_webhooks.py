"""``flask licensechain webhooks run [--once]``: the webhook delivery worker.

Without ``--once`` it runs until SIGTERM or SIGINT (then it finishes the attempts in
flight and exits 0); with ``--once`` it announces due license expiries, delivers what is
due now, and exits. Several workers may run at once, on several machines (see
``flask_licensechain/webhooks/worker.py`` for the guarantees: at least once, no order).
"""

from __future__ import annotations

import functools
import signal
import threading
from types import FrameType

import click

from .command import LicenseChainGroup, emit, issuer
from .maintenance import run_maintenance
from .webhooks.worker import DEFAULT_THREADS, Worker

webhooks_cli = LicenseChainGroup("webhooks", help="Deliver the webhook outbox.")


@webhooks_cli.command("run", help="Run the webhook delivery worker.")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=DEFAULT_THREADS,
    show_default=True,
    help="Deliveries sent at the same time.",
)
def run(as_json: bool, once: bool, threads: int) -> None:
    state, _ = issuer()
    assert state.webhooks is not None
    worker = Worker(
        state.webhooks, threads=threads, maintenance=functools.partial(run_maintenance, state)
    )
    try:
        if once:
            report = worker.run_once()
        else:
            stop = threading.Event()

            def on_signal(_signum: int, _frame: FrameType | None) -> None:
                stop.set()
                worker.wake()

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            if not as_json:
                click.echo(f"Webhook worker {worker.name} running; stop with Ctrl-C.", err=True)
            report = worker.run(stop)
    finally:
        state.webhooks.close()
    counts = report.as_dict()
    emit(
        as_json,
        {"worker": worker.name, **counts},
        "Webhooks: {attempted} attempted, {succeeded} delivered, {failed} failed, "
        "{disabled} endpoints disabled, {expired} license expiries announced.".format(**counts),
    )
