"""What the webhooks of one issuer share: their settings, the store, the sealing key, the
destination policy, the outbox and the HTTP sender. ``IssuerState.webhooks`` holds it; the
services, the worker and the API read it. Nothing here needs a Flask app context.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ..config import Settings
from ..core.sealing import Sealer
from ..store import Store
from ..store.webhooks import WebhookEndpointRecord, secret_context
from . import secret as secret_box
from .delivery import Sender
from .outbox import Outbox
from .ssrf import DestinationPolicy

#: a delay is drawn uniformly within this fraction of its nominal value (jitter)
JITTER: Final = 0.2
#: how far past the attempt timeout a claimed delivery stays leased to its worker
LEASE_MARGIN: Final = 5.0

_random = random.SystemRandom()


@dataclass(frozen=True)
class WebhookSettings:
    """The ``LICENSECHAIN_WEBHOOKS_*`` settings (seconds unless said otherwise; their
    defaults and meaning: ``config.py``)."""

    allow_private: bool
    timeout: float
    retry_schedule: tuple[float, ...]
    disable_after: float
    secret_overlap: float
    poll_interval: float
    retention_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSettings:
        return cls(
            allow_private=settings.webhooks_allow_private,
            timeout=settings.webhooks_timeout,
            retry_schedule=settings.webhooks_retry_schedule,
            disable_after=settings.webhooks_disable_after,
            secret_overlap=settings.webhooks_secret_overlap,
            poll_interval=settings.webhooks_poll_interval,
            retention_days=settings.webhooks_retention_days,
        )

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1

    def lease(self, batch: int = 1) -> timedelta:
        """How long a worker holds ``batch`` claimed deliveries: one timeout each, plus a
        margin for recording them."""
        return timedelta(seconds=batch * self.timeout + LEASE_MARGIN)


class WebhookRuntime:
    """See the module docstring. ``install()`` adds the outbox to the store's listeners."""

    def __init__(self, store: Store, sealer: Sealer, settings: WebhookSettings) -> None:
        self.store = store
        self.repository = store.webhooks
        self.settings = settings
        self.policy = DestinationPolicy(allow_private=settings.allow_private)
        self.outbox = Outbox(self.repository, max_attempts=settings.max_attempts)
        self._sealer = sealer
        self._sender: Sender | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookRuntime(allow_private={self.settings.allow_private})"

    def install(self) -> None:
        self.store.changes.add_listener(self.outbox.listener)

    @property
    def sender(self) -> Sender:
        """The HTTP sender, made on first use (one connection pool per process)."""
        with self._lock:
            if self._sender is None:
                self._sender = Sender(self.policy, timeout=self.settings.timeout)
            return self._sender

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None

    # -- secrets ---------------------------------------------------------------------------

    def seal(self, secret: bytes, endpoint_id: str) -> bytes:
        """``secret`` sealed for ``endpoint_id`` (the sealed text, as ASCII bytes)."""
        return self._sealer.seal(secret, context=secret_context(endpoint_id)).encode("ascii")

    def _unseal(self, sealed: bytes, endpoint_id: str) -> bytes:
        return self._sealer.unseal(sealed, context=secret_context(endpoint_id))

    def signing_secrets(self, endpoint: WebhookEndpointRecord, now: datetime) -> list[bytes]:
        """The secrets a delivery to ``endpoint`` is signed with now: the current one, and
        the previous one during a rotation's overlap. An app endpoint's first secret is
        made here (``KeyMaterialError`` when a sealed secret cannot be opened)."""
        sealed = endpoint.sealed_secret
        if sealed is None:
            sealed = self._first_secret(endpoint.id)
        found = [self._unseal(sealed, endpoint.id)]
        previous, until = endpoint.sealed_previous_secret, endpoint.previous_secret_expires_at
        if previous is not None and until is not None and now < until:
            found.append(self._unseal(previous, endpoint.id))
        return found

    def _first_secret(self, endpoint_id: str) -> bytes:
        from_row = self.repository.set_first_secret(
            endpoint_id, self.seal(secret_box.new_secret(), endpoint_id)
        )
        return from_row

    # -- retries ---------------------------------------------------------------------------

    def next_attempt_at(self, attempts: int, max_attempts: int, now: datetime) -> datetime | None:
        """When attempt ``attempts + 1`` is due after attempt ``attempts`` failed, with
        jitter; ``None`` when that was the last one (the delivery is dead)."""
        if attempts >= max_attempts:
            return None
        schedule: Sequence[float] = self.settings.retry_schedule
        nominal = schedule[min(attempts, len(schedule)) - 1] if schedule else 0.0
        delay = nominal * _random.uniform(1 - JITTER, 1 + JITTER)
        return now + timedelta(seconds=delay)
