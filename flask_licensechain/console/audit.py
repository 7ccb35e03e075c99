"""The console's ONE way to write an audit event.

Every sign-in, failure, lock, second-factor change and session revocation goes through
``audit_event``. TEMPORARY: it calls the store's audit repository; when issue 11's
same-transaction audit API lands, switch this one function to it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.errors import LicenseChainError
from ..store import Store

log = logging.getLogger("licensechain.console")


def audit_event(
    store: Store, action: str, *, actor: str | None, target: str | None = None, **data: Any
) -> None:
    """Record ``action`` (``console.login``, ``console.login_failed``...) by ``actor``
    (``user:<id>``, or ``None`` when nobody is known) on ``target``. A lost audit line is
    logged, not raised: the sign-in already happened."""
    try:
        store.audit.record(action, actor=actor, target=target, data=data)
    except LicenseChainError as exc:
        log.warning("could not record audit event %s: %s", action, exc.detail or exc)
