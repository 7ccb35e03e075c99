"""The delivery worker: claims due deliveries, sends them, records each attempt, schedules
retries, disables endpoints that keep failing, and sweeps license expiries.

- ``Worker.run_once()`` delivers everything due now and returns (``flask licensechain
  webhooks run --once``); ``Worker.run(stop)`` keeps going until ``stop`` is set (``flask
  licensechain webhooks run``); ``BackgroundWorker`` runs it in a daemon thread of the
  web process (``LICENSECHAIN_WEBHOOKS_BACKGROUND``, for the embedded default).
- Each of ``threads`` threads claims up to ``batch`` due deliveries at a time (a lease of
  ``batch`` attempt timeouts plus 5 s, ``store/webhooks.py``), sends them one after the
  other and records their attempts together. Several
  workers, in several processes, share the queue; on PostgreSQL with ``FOR UPDATE SKIP
  LOCKED``, on SQLite behind its write lock.
- Guarantees: at least once (a worker that dies mid-attempt leaves the delivery leased
  until the lease ends; then another worker sends it again, with the same ``webhook-id``).
  No order: deliveries are sent in parallel and retried on their own schedules, so a
  receiver may see ``license.updated`` before ``license.created``; it should order by the
  payload's ``timestamp`` or re-read the object.
- Each sweep (at start, then every 30 s) also deletes finished deliveries older than
  ``LICENSECHAIN_WEBHOOKS_RETENTION_DAYS``.
- Given ``maintenance`` (a callable: ``maintenance.run_maintenance`` bound to the issuer
  state, wired by ``flask licensechain webhooks run`` and the background thread), the worker
  also runs the store's maintenance (retention of IPs and user agents, signing-key
  retirement): ``run()`` at start and then at most once per ``MAINTENANCE_INTERVAL`` (an
  hour), ``run_once()`` once. The job is idempotent, so several workers may run it.
- A 2xx is success; otherwise the next attempt is scheduled with jitter
  (``LICENSECHAIN_WEBHOOKS_RETRY_SCHEDULE``), and after the last one the delivery is dead
  (visible, retryable by hand). An endpoint failing without a single success for
  ``LICENSECHAIN_WEBHOOKS_DISABLE_AFTER`` seconds is disabled (``services.webhooks``).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..core.errors import LicenseChainError
from ..services import webhooks as service
from ..store import Actor, Change
from ..store.webhooks import ClaimedDelivery, Outcome
from .delivery import AttemptResult
from .events import EVENT_TYPES
from .runtime import WebhookRuntime

log = logging.getLogger("licensechain.webhooks")

#: seconds between two license-expiry sweeps of a running worker
SWEEP_INTERVAL = 30.0
#: seconds between two maintenance runs of a running worker (an hour)
MAINTENANCE_INTERVAL = 3600.0
DEFAULT_THREADS = 8
#: deliveries one thread claims at a time (their results are recorded together)
DEFAULT_BATCH = 4


@dataclass
class RunReport:
    """What a run did: deliveries attempted, succeeded, failed; endpoints disabled;
    license expiries announced."""

    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    disabled: int = 0
    expired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, ok: bool) -> None:
        with self._lock:
            self.attempted += 1
            if ok:
                self.succeeded += 1
            else:
                self.failed += 1

    def as_dict(self) -> dict[str, int]:
        return {
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "disabled": self.disabled,
            "expired": self.expired,
        }


class Worker:
    """See the module docstring. ``name`` identifies its leases (default: host pid and a
    random part)."""

    def __init__(
        self,
        runtime: WebhookRuntime,
        *,
        threads: int = DEFAULT_THREADS,
        batch: int = DEFAULT_BATCH,
        name: str | None = None,
        maintenance: Callable[[], object] | None = None,
    ) -> None:
        self.runtime = runtime
        self.maintenance = maintenance
        self._last_maintenance: float | None = None
        self.threads = max(1, threads)
        self.batch = max(1, batch)
        self.name = name or f"w{os.getpid()}-{secrets.token_hex(4)}"
        self._wake = threading.Event()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def run_once(self) -> RunReport:
        """Run maintenance (if given), sweep expiries, then deliver until nothing is due;
        return what was done."""
        report = RunReport()
        self._maintain()
        report.expired = self._sweep()
        self._drain(report, threading.Event())
        return report

    def run(self, stop: threading.Event) -> RunReport:
        """Deliver until ``stop`` is set, polling every ``poll_interval`` seconds."""
        report = RunReport()
        last_sweep = 0.0
        poll = self.runtime.settings.poll_interval
        while not stop.is_set():
            last = self._last_maintenance
            if last is None or time.monotonic() - last >= MAINTENANCE_INTERVAL:
                self._maintain()
            if time.monotonic() - last_sweep >= SWEEP_INTERVAL:
                report.expired += self._sweep()
                last_sweep = time.monotonic()
            try:
                self._drain(report, stop)
            except LicenseChainError as exc:  # the store is down: try again later
                log.warning("webhook worker: %s", exc.detail or exc)
            except Exception:  # a bug must not end a long-running worker silently
                log.exception("webhook worker: unexpected error; going on")
            self._wake.wait(poll)
            self._wake.clear()
        return report

    def _maintain(self) -> None:
        """Run ``maintenance`` once; a store error is logged, the next try is an hour on."""
        if self.maintenance is None:
            return
        self._last_maintenance = time.monotonic()
        try:
            self.maintenance()
        except LicenseChainError as exc:
            log.warning("maintenance failed: %s", exc.detail or exc)
        except Exception:  # a bug must not end a long-running worker silently
            log.exception("maintenance: unexpected error; going on")

    def _sweep(self) -> int:
        """Announce license expiries, and delete finished deliveries past retention."""
        try:
            retention = timedelta(days=self.runtime.settings.retention_days)
            self.runtime.repository.prune(datetime.now(UTC) - retention)
            return service.announce_expirations(self.runtime)
        except LicenseChainError as exc:
            log.warning("webhook sweep failed: %s", exc.detail or exc)
            return 0

    def _drain(self, report: RunReport, stop: threading.Event) -> None:
        if self.threads == 1:
            self._loop(report, stop)
            return
        errors: list[BaseException] = []

        def loop() -> None:
            try:
                self._loop(report, stop)
            except BaseException as exc:  # reported by the caller's thread
                errors.append(exc)

        pool = [
            threading.Thread(target=loop, name=f"{self.name}-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        if errors:
            raise errors[0]

    def _loop(self, report: RunReport, stop: threading.Event) -> None:
        repository = self.runtime.repository
        settings = self.runtime.settings
        while not stop.is_set():
            claimed = repository.claim_due(
                self.name, now=datetime.now(UTC), lease=settings.lease(self.batch), limit=self.batch
            )
            if not claimed:
                return
            outcomes = [self.attempt(delivery) for delivery in claimed]
            repository.finish(outcomes)
            for outcome in outcomes:
                report.count(outcome.succeeded)
            self._disable_failing(outcomes, report)

    def attempt(self, delivery: ClaimedDelivery) -> Outcome:
        """Send one claimed delivery: its outcome, with the next attempt's time when it
        failed and has attempts left."""
        runtime = self.runtime
        started = datetime.now(UTC)
        endpoint = delivery.endpoint
        try:
            result = service.attempt_delivery(
                runtime, endpoint, delivery.event_id, delivery.payload
            )
        except LicenseChainError as exc:  # a secret that cannot be unsealed
            log.error("webhook %s: %s", endpoint.id, exc.detail or exc)
            result = AttemptResult(None, 0, "the signing secret cannot be unsealed")
        next_at = None
        if not result.ok:
            next_at = runtime.next_attempt_at(delivery.attempts, delivery.max_attempts, started)
            log.info(
                "webhook %s delivery %s attempt %d failed: %s",
                endpoint.id,
                delivery.id,
                delivery.attempts,
                result.error,
            )
        return Outcome(delivery, result.as_record(started), next_at)

    def _disable_failing(self, outcomes: list[Outcome], report: RunReport) -> None:
        limit = timedelta(seconds=self.runtime.settings.disable_after)
        done: set[str] = set()
        for outcome in outcomes:
            endpoint = outcome.delivery.endpoint
            since = endpoint.failing_since
            if outcome.succeeded or endpoint.id in done or since is None:
                continue
            if outcome.attempt.attempted_at - since < limit:
                continue
            done.add(endpoint.id)
            reason = f"every delivery failed for {limit.total_seconds() / 86400:g} days"
            if service.disable_failing(self.runtime, endpoint, reason=reason) is not None:
                log.warning("webhook %s disabled: %s", endpoint.id, reason)
                report.disabled += 1


class BackgroundWorker:
    """A ``Worker`` in a daemon thread of this process, started on first use (so a forked
    web worker starts its own) and stopped with ``stop()``."""

    def __init__(
        self,
        runtime: WebhookRuntime,
        *,
        threads: int = 2,
        maintenance: Callable[[], object] | None = None,
    ) -> None:
        self.worker = Worker(runtime, threads=threads, maintenance=maintenance)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self.worker.run,
                args=(self._stop,),
                name="licensechain-webhooks",
                daemon=True,
            )
            self._thread.start()

    def wake_for(self, actor: Actor, change: Change) -> None:
        """A committed-change listener: a change with an event wakes the thread at once."""
        if change.action in EVENT_TYPES:
            self.worker.wake()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.worker.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
