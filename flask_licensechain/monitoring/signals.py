"""Security signals per license, over sliding windows, reported as ``security.anomaly``.

Three signals, each with a threshold ``COUNT/PERIOD`` from the settings (``off`` disables):

- ``hardware_churn`` (``LICENSECHAIN_SIGNAL_HARDWARE_CHURN``, default ``10/hour``): devices
  bound, devices released, and verifications refused for ``hardware_id_mismatch``;
- ``key_sharing`` (``LICENSECHAIN_SIGNAL_KEY_SHARING``, default ``20/hour``): distinct
  client addresses presenting the license's key (any answer);
- ``failed_verifications`` (``LICENSECHAIN_SIGNAL_FAILED_VERIFICATIONS``, default
  ``50/10 minutes``): verifications of the license that were refused, whatever the reason.

A signal fires when a license goes over COUNT within PERIOD, once per PERIOD per license
(the window's claim, shared by every worker when the counts are in Redis). Firing records a
``Change("security.anomaly")`` by ``store.changes.SYSTEM`` in its own unit of work (so the
audit log, and the webhook outbox, get it) and increments
``licensechain_security_anomalies_total{signal}``. Nothing is ever refused because of it:
the signal is for the seller to look at.

The request path only notes what happened: ``SignalMonitor.observe_*`` appends a tuple to a
list under a lock (no I/O). A timer thread, started when the first note of a batch arrives,
takes the batch every ``flush_seconds`` (0.5 s), adds it to the windows (``windows.py``: in
memory, or one Redis round trip) and fires what went over. A failure there is logged and
never reaches a customer. A forked worker starts with an empty batch; a process that exits
counts its pending notes at interpreter exit (``close()``); a killed one loses at most its
last ``flush_seconds`` of notes.

Personal data: client addresses are counted as keyed digests (BLAKE2b, keyed with the
windows' salt, 16 bytes), never stored; the anomaly's ``data`` holds the signal, the
threshold and the window only, and its ``target`` is the license id.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from flask import has_app_context

from ..client_ip import client_ip
from ..core.contract import Reason
from ..state import IssuerState, get_state
from ..store.changes import Change
from . import metrics
from .windows import WindowAdd, WindowStore

log = logging.getLogger("licensechain.signals")

HARDWARE_CHURN: Final = "hardware_churn"
KEY_SHARING: Final = "key_sharing"
FAILED_VERIFICATIONS: Final = "failed_verifications"
SIGNALS: Final = (HARDWARE_CHURN, KEY_SHARING, FAILED_VERIFICATIONS)
ANOMALY_ACTION: Final = "security.anomaly"
#: Change actions that revoke (counted in ``licensechain_revocations_total``)
REVOCATION_ACTIONS: Final = frozenset(
    {"token.revoke", "license.revoke", "license.suspend", "device.release"}
)
DEFAULT_FLUSH_SECONDS: Final = 0.5
DEFAULT_MAX_PENDING: Final = 100_000

_VERIFIED: Final = "v"
_DEVICE: Final = "d"


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fire when more than ``count`` events fall within ``window`` seconds."""

    count: int
    window: float

    @classmethod
    def parse(cls, text: str) -> Threshold | None:
        """``COUNT/PERIOD`` in the ``limits`` syntax (``10/hour``), or None for ``off``.
        Raises ``ValueError`` for anything else (the settings check it first)."""
        if text.strip().lower() == "off":
            return None
        from limits import parse  # the limits package loads its storages on import

        item = parse(text)
        return cls(int(item.amount), float(item.get_expiry()))


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A signal that went over its threshold for one license."""

    signal: str
    license_id: str
    app_id: str | None
    threshold: Threshold

    def change(self) -> Change:
        """The ``security.anomaly`` change: non-personal facts only."""
        return Change(
            action=ANOMALY_ACTION,
            target=self.license_id,
            app_id=self.app_id,
            data={
                "signal": self.signal,
                "threshold": self.threshold.count,
                "window_seconds": self.threshold.window,
            },
        )


#: (kind, license id, app id, reason or device event, client address, unix seconds)
_Note = tuple[str, str, str, str | None, str | None, float]


class SignalMonitor:
    """Counts the notes of one app's requests and fires its anomalies (module docstring).

    ``fire`` is called from the flushing thread with each anomaly whose window this monitor
    claimed; when it raises, the claim is released and the error logged.
    """

    def __init__(
        self,
        thresholds: Mapping[str, Threshold | None],
        windows: WindowStore,
        fire: Callable[[Anomaly], None],
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.thresholds = {s: t for s, t in thresholds.items() if t is not None}
        self.windows = windows
        self._fire = fire
        #: seconds between the first note of a batch and its flush
        self.flush_seconds = flush_seconds
        self._max_pending = max_pending
        self._clock = clock
        self._flush_lock = threading.Lock()
        self._closed = False
        self._reset()
        atexit.register(_close_at_exit, weakref.ref(self))

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: list[_Note] = []
        self._timer: threading.Timer | None = None
        self._flush_lock = threading.Lock()
        self._serial = itertools.count()
        self._tag = secrets.token_hex(4)  # counted members stay unique across processes

    # -- the request path --------------------------------------------------------------

    def observe_verification(
        self, license_id: str, app_id: str, reason: str | None, address: str
    ) -> None:
        """A verification of a known license: ``reason`` None when it passed."""
        self._note((_VERIFIED, license_id, app_id, reason, address, self._clock()))

    def observe_device(self, license_id: str, app_id: str, event: str) -> None:
        """A device ``bound`` to or ``released`` from a license."""
        self._note((_DEVICE, license_id, app_id, event, None, self._clock()))

    def _note(self, note: _Note) -> None:
        if os.getpid() != self._pid:
            self._reset()
        with self._lock:
            if len(self._pending) >= self._max_pending:
                return  # the flusher is behind: drop rather than grow
            self._pending.append(note)
            if self._timer is None and not self._closed:
                timer = threading.Timer(self.flush_seconds, self._on_timer)
                timer.daemon = True
                self._timer = timer
                timer.start()

    # -- the flushing thread -----------------------------------------------------------

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.flush()
        except Exception as error:  # Redis or the store is down: never a customer's problem
            log.warning("security signals not counted: %s: %s", type(error).__name__, error)

    def flush(self) -> list[Anomaly]:
        """Count the pending notes now and fire what went over; the anomalies fired.
        Raises what the window store raises (the batch is then lost)."""
        if os.getpid() != self._pid:
            self._reset()
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return []
            return self._count(batch)

    def _count(self, batch: list[_Note]) -> list[Anomaly]:
        now = self._clock()
        adds: dict[tuple[str, str], dict[str, float]] = {}
        apps: dict[str, str] = {}
        salt = self.windows.salt() if KEY_SHARING in self.thresholds else b""
        for kind, license_id, app_id, what, address, at in batch:
            apps[license_id] = app_id
            signals: list[tuple[str, str]] = []
            if kind == _DEVICE:
                signals.append((HARDWARE_CHURN, self._unique(at)))
            else:
                if address is not None and KEY_SHARING in self.thresholds:
                    signals.append((KEY_SHARING, _digest(salt, address)))
                if what is not None:
                    signals.append((FAILED_VERIFICATIONS, self._unique(at)))
                    if what == Reason.HARDWARE_ID_MISMATCH:
                        signals.append((HARDWARE_CHURN, self._unique(at)))
            for signal, member in signals:
                if signal in self.thresholds:
                    adds.setdefault((signal, license_id), {})[member] = at
        keys = list(adds)
        counts = self.windows.add_many(
            [
                WindowAdd(
                    f"{signal}:{license_id}",
                    adds[(signal, license_id)],
                    self.thresholds[signal].window,
                    self.thresholds[signal].count + 1,
                )
                for signal, license_id in keys
            ],
            now,
        )
        over = [
            key
            for key, count in zip(keys, counts, strict=True)
            if count > self.thresholds[key[0]].count
        ]
        claims = [(f"{s}:{lic}", self.thresholds[s].window) for s, lic in over]
        fired: list[Anomaly] = []
        for (signal, license_id), won in zip(
            over, self.windows.claim_many(claims, now), strict=True
        ):
            if not won:
                continue
            anomaly = Anomaly(
                signal, license_id, apps.get(license_id) or None, self.thresholds[signal]
            )
            try:
                self._fire(anomaly)
            except Exception as error:
                self.windows.release(f"{signal}:{license_id}")
                log.warning("could not record %s on %s: %s", signal, license_id, error)
                continue
            fired.append(anomaly)
        return fired

    def _unique(self, at: float) -> str:
        return f"{at:.6f}:{self._tag}:{next(self._serial)}"

    def close(self) -> None:
        """Stop the timer and count what is pending (best effort)."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        try:
            self.flush()
        except Exception as error:
            log.warning("security signals not counted at close: %s", error)


def _close_at_exit(ref: weakref.ref[SignalMonitor]) -> None:
    monitor = ref()
    if monitor is not None and not monitor._closed:
        monitor.close()


def _digest(salt: bytes, address: str) -> str:
    return hashlib.blake2b(address.encode(), key=salt[:64], digest_size=16).hexdigest()


@dataclass(eq=False)
class Monitoring:
    """One app's monitoring switches: whether to count metrics, and its signal monitor."""

    metrics: bool
    signals: SignalMonitor | None


# -- the hooks of the views: one call each, cheap, never raising into the request ----------


class VerificationOutcome(Protocol):
    """What ``observe_verification`` reads of ``api.verification.Decision``."""

    @property
    def reason(self) -> str | None: ...

    @property
    def license_id(self) -> str | None: ...

    @property
    def app_id(self) -> str | None: ...


def observe_verification(state: IssuerState, decision: VerificationOutcome) -> None:
    """One verify/validate-hardware answer (``api/public.py``): its metrics, and its notes
    for the signals when the key named a license."""
    monitoring = state.monitoring
    if monitoring is None:
        return
    if monitoring.metrics:
        metrics.count_verification(decision.reason)
    monitor = monitoring.signals
    license_id = decision.license_id
    if monitor is not None and license_id is not None:
        monitor.observe_verification(
            license_id, decision.app_id or "", decision.reason, client_ip()
        )


def observe_device(event: str, license_id: str, app_id: str) -> None:
    """A device ``bound`` (``api/verification.py``) or ``released`` (``api/licenses.py``)
    on the current app; any other ``event`` (``known``, ``full``) is ignored. A no-op
    outside an app context or without signals."""
    if event not in ("bound", "released") or not has_app_context():
        return
    monitoring: Any = getattr(get_state(), "monitoring", None)
    if monitoring is not None and monitoring.signals is not None:
        monitoring.signals.observe_device(license_id, app_id, event)


def count_revocation(actor: object, change: Change) -> None:
    """A committed-change listener: count a revocation (``REVOCATION_ACTIONS``) once its
    unit has committed."""
    if change.action in REVOCATION_ACTIONS:
        metrics.REVOCATIONS.labels(change.action).inc()
