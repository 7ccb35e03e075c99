"""Server-authoritative mode of the gate (``LICENSECHAIN_AUTHORITATIVE = True``).

After the offline check, the gate also asks for the license's live status:

- the issuer app asks its own store (the license row, its effective status);
- an integrator app POSTs the token to the issuer's introspect endpoint
  (``LICENSECHAIN_INTROSPECT_URL``, or derived from ``LICENSECHAIN_JWKS_URL``).

Answers are reused for ``LICENSECHAIN_AUTHORITATIVE_CACHE_TTL`` seconds per token id, so
a burst of requests costs one lookup. It is for apps that need a suspension or revocation
to bite within seconds without sharing the issuer's Redis. It fails closed: when the
status cannot be learned, the request gets 503, never a pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from .config import Settings
from .core.contract import STATUS_REASON, Reason
from .core.errors import ConfigError, InvalidToken, LicenseChainError, Unavailable
from .core.verifier import LicenseClaims

if TYPE_CHECKING:
    from .store.records import LicenseRecord

log = logging.getLogger("licensechain.authoritative")

INTROSPECT_TIMEOUT = 2.0
MAX_INTROSPECT_RESPONSE_BYTES = 64 * 1024
DEFAULT_CACHE_ENTRIES = 10_000

#: license id -> its record (None when unknown); raises ``Unavailable`` when it cannot tell
LicenseLookup = Callable[[str], "LicenseRecord | None"]


class StatusSource(Protocol):
    def live_reason(self, token: str, claims: LicenseClaims) -> str | None:
        """None when the license is live; else the contract reason it is not."""


class StoreStatus:
    """Issuer mode: the live status from the local store."""

    def __init__(self, lookup: LicenseLookup, clock: Callable[[], datetime] | None = None) -> None:
        self._lookup = lookup
        self._now = clock or (lambda: datetime.now(UTC))

    def live_reason(self, token: str, claims: LicenseClaims) -> str | None:
        try:
            record = self._lookup(claims.sub)
        except LicenseChainError:
            raise
        except Exception as exc:  # a store driver error: fail closed
            raise Unavailable(detail=f"license store lookup failed: {exc}") from exc
        if record is None:
            return Reason.LICENSE_NOT_FOUND
        status = record.effective_status(self._now())
        return STATUS_REASON.get(status) if status != "ACTIVE" else None


class IntrospectStatus:
    """Integrator mode: POST the token to the issuer's introspect endpoint."""

    def __init__(self, url: str, client: httpx.Client | None = None) -> None:
        self.url = url
        self._client = client or httpx.Client(
            timeout=INTROSPECT_TIMEOUT, follow_redirects=False, trust_env=False
        )

    def live_reason(self, token: str, claims: LicenseClaims) -> str | None:
        try:
            response = self._client.post(self.url, json={"license_token": token})
        except httpx.HTTPError as exc:
            raise Unavailable(detail=f"introspect unreachable: {exc}") from exc
        if response.status_code != 200 or len(response.content) > MAX_INTROSPECT_RESPONSE_BYTES:
            raise Unavailable(detail=f"introspect answered HTTP {response.status_code}")
        try:
            answer: Any = response.json()
        except ValueError as exc:
            raise Unavailable(detail="introspect answered non-JSON") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise Unavailable(detail="introspect answer has no boolean 'active'")
        if answer["active"]:
            # An active answer must be about this token and a live license.
            if answer.get("jti") not in (None, claims.jti) or answer.get("status") != "ACTIVE":
                return Reason.TOKEN_INVALID
            return None
        reason = answer.get("reason")
        return reason if isinstance(reason, str) and reason else Reason.TOKEN_INVALID

    def close(self) -> None:
        self._client.close()


class LiveStatusChecker:
    """A status source behind a short, bounded per-``jti`` cache."""

    def __init__(
        self,
        source: StatusSource,
        *,
        ttl: float,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.ttl = max(0.0, float(ttl))
        self.max_entries = max(1, int(max_entries))
        self._clock = clock
        self._answers: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, token: str, claims: LicenseClaims) -> None:
        """Return when the license is live; raise ``InvalidToken`` or ``Unavailable``."""
        reason = self._cached(claims.jti)
        if reason is _MISS:
            reason = self.source.live_reason(token, claims)  # Unavailable is never cached
            self._remember(claims.jti, reason)
        if reason is not None:
            raise InvalidToken(str(reason), detail=f"live status: {reason}")

    def _cached(self, jti: str) -> str | object | None:
        entry = self._answers.get(jti)
        if entry is None or entry[0] <= self._clock():
            return _MISS
        return entry[1]

    def _remember(self, jti: str, reason: str | None) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._answers[jti] = (self._clock() + self.ttl, reason)
            self._answers.move_to_end(jti)
            while len(self._answers) > self.max_entries:
                self._answers.popitem(last=False)


_MISS = object()


def introspect_url_for(jwks_url: str | None, introspect_url: str | None) -> str | None:
    """The configured introspect URL, or the one beside a ``.../licenses/jwks`` JWKS URL."""
    if introspect_url:
        return introspect_url
    if jwks_url and jwks_url.rstrip("/").endswith("/licenses/jwks"):
        return jwks_url.rstrip("/")[: -len("jwks")] + "introspect"
    return None


def build_live_status_checker(settings: Settings, store: Any | None) -> LiveStatusChecker:
    """The app's checker, built once in ``init_app``.

    :raises ConfigError: an integrator app with no introspect URL (neither
        ``LICENSECHAIN_INTROSPECT_URL`` nor a ``.../licenses/jwks`` JWKS URL to derive it).
    """
    source: StatusSource
    if store is not None:
        source = StoreStatus(store_license_lookup(store))
    else:
        url = introspect_url_for(settings.jwks_url, settings.introspect_url)
        if url is None:
            raise ConfigError(
                "LICENSECHAIN_AUTHORITATIVE is on but there is no store and no "
                "LICENSECHAIN_INTROSPECT_URL (nor a .../licenses/jwks JWKS URL to derive it)"
            )
        source = IntrospectStatus(url)
    return LiveStatusChecker(source, ttl=settings.authoritative_cache_ttl)


def store_license_lookup(store: Any) -> LicenseLookup:
    """Adapt the issuer's store to a ``license id -> LicenseRecord | None`` lookup."""
    licenses = store.licenses

    def lookup(license_id: str) -> LicenseRecord | None:
        record: LicenseRecord | None = licenses.get(license_id)
        return record

    return lookup
