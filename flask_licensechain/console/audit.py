"""The console's ONE way to write an audit event.

Every sign-in, failure, lock, second-factor change and session revocation goes through
``audit_event``. TEMPORARY: it calls the store's audit repository; when issue 11's
same-transaction audit API lands, switch this one function to it.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from ..core.errors import LicenseChainError
from ..store import Store

log = logging.getLogger("licensechain.console")

#: the keyword arguments of ``audit_event`` that are personal data (VOCABULARY: Change.data
#: holds non-personal facts only): stored beside the event, outside its MAC, so that an
#: erasure can blank them; ``ip`` becomes the actor's address
PERSONAL_KEYS: Final = frozenset({"email", "ip", "name", "display_name", "user_agent"})


def audit_event(
    store: Store, action: str, *, actor: str | None, target: str | None = None, **data: Any
) -> None:
    """Record ``action`` (``console.login``, ``console.login_failed``...) by ``actor``
    (``user:<id>``, or ``None`` when nobody is known) on ``target``; ``data`` keys in
    ``PERSONAL_KEYS`` go outside the audit MAC (``store/audit.py``). A lost audit line is
    logged, not raised: the sign-in already happened."""
    facts = {key: value for key, value in data.items() if key not in PERSONAL_KEYS}
    personal = {key: value for key, value in data.items() if key in PERSONAL_KEYS and key != "ip"}
    ip = data.get("ip")
    try:
        store.audit.record(
            action,
            actor=actor,
            target=target,
            data=facts,
            personal=personal,
            ip=None if ip is None else str(ip),
        )
    except LicenseChainError as exc:
        log.warning("could not record audit event %s: %s", action, exc.detail or exc)
