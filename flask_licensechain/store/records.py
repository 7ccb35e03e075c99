"""Plain records the repositories return. Times are timezone-aware UTC datetimes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..roles import Rights


@dataclass(frozen=True)
class AppRecord:
    id: str
    name: str
    slug: str
    description: str | None
    tier: str  # seller tier: free / pro / business / enterprise
    created_at: datetime
    updated_at: datetime
    webhook_url: str | None = None
    #: browser origins (``scheme://host[:port]``) allowed to call the public endpoints
    allowed_origins: tuple[str, ...] = ()
    mode: str = "live"  # "live" or "test", set at creation: which API keys may act on it


@dataclass(frozen=True)
class DeviceRecord:
    hwuid: str
    bound_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class LicenseRecord:
    id: str
    app_id: str
    key: str
    plan: str | None
    status: str  # stored status: ACTIVE / SUSPENDED / REVOKED
    issued_to: str | None
    issued_email: str | None
    expires_at: datetime | None
    features: tuple[str, ...]
    metadata: dict[str, Any]
    max_devices: int
    require_hwuid: bool
    created_at: datetime
    updated_at: datetime
    devices: tuple[DeviceRecord, ...] = ()

    def effective_status(self, now: datetime) -> str:
        """EXPIRED is derived once ``expires_at`` has passed; other statuses win over it."""
        if self.status == "ACTIVE" and self.expires_at is not None and self.expires_at <= now:
            return "EXPIRED"
        return self.status


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    name: str
    prefix: str  # first characters of the key, for display ("lc_live_ab12")
    scopes: tuple[str, ...]  # the effective scopes (a role's scopes for a role key)
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    environment: str = "live"  # "live" or "test", from the key's lc_live_ / lc_test_ prefix
    app_ids: frozenset[str] | None = None  # the apps the key may act on; None: every app
    description: str | None = None
    role: str | None = None  # roles.py name, or None for explicit scopes
    expires_at: datetime | None = None
    last_used_ip: str | None = None
    usage_count: int = 0
    #: after a rotation, until when the previous secret still works
    previous_expires_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def rights(self) -> Rights:
        """What the key may reach (``roles.Rights``)."""
        return Rights(self.scopes, self.environment, self.app_ids, self.expires_at)


@dataclass(frozen=True)
class SigningKeyRecord:
    kid: str
    public_jwk: dict[str, str]
    sealed_private_key: bytes | None = field(repr=False)
    state: str  # active / retiring / retired
    created_at: datetime
    retired_at: datetime | None  # when it stopped signing
    expires_at: datetime | None  # when its last token is dead; then it leaves the JWKS


@dataclass(frozen=True)
class AuditRecord:
    """One audit event. ``seq`` is its place in the hash chain (``None``: written before the
    chain existed); ``actor`` the actor's id; the ``actor_ip``, ``actor_user_agent`` and
    ``personal`` members are personal data (``None`` once erased)."""

    id: int
    action: str
    actor: str | None
    target: str | None
    data: dict[str, Any]
    created_at: datetime
    seq: int | None = None
    actor_kind: str | None = None
    actor_name: str | None = None
    request_id: str | None = None
    app_id: str | None = None
    actor_ip: str | None = None
    actor_user_agent: str | None = None
    personal: dict[str, Any] | None = None


@dataclass(frozen=True)
class BindOutcome:
    """Result of binding a hardware id: ``bound`` (new slot), ``known`` or ``full``."""

    result: str
    devices: tuple[DeviceRecord, ...]

    @property
    def ok(self) -> bool:
        return self.result in ("bound", "known")
