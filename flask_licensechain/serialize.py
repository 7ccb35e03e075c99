"""Store records as the JSON objects the HTTP API and the CLI's ``--json`` print, and the
date-times both read and write.

Field names are camelCase as LicenseChain's clients expect (``appId``, ``expiresAt``...);
date-times are ISO 8601 in UTC with milliseconds and ``Z``. Neither the HTTP layer nor the
CLI owns this: both call it, so a record looks the same wherever it is shown.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final

from .core.contract import verification_type
from .core.errors import InvalidRequest
from .store.records import ApiKeyRecord, AppRecord, AuditRecord, DeviceRecord, LicenseRecord

#: 9999-12-31T23:59:59Z, the last second ``datetime`` can hold, in unix seconds
MAX_UNIX_SECONDS: Final = 253402300799


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and ``Z``, as JavaScript's ``toISOString`` writes it."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    else:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def iso_from_unix(seconds: int) -> str | None:
    """``iso`` of a unix time in seconds."""
    return iso(datetime.fromtimestamp(seconds, UTC))


def parse_timestamp(value: Any, name: str) -> datetime:
    """An aware UTC ``datetime`` from an ISO 8601 date-time (naive means UTC) or unix seconds.

    ``name`` is the field's name for the error message. Raises ``InvalidRequest`` (400) for
    anything else: another type, a bad string (longer than 64 characters included), or a
    time outside years 1970-9999 for numbers.
    """
    if isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be an ISO 8601 date-time.")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value <= MAX_UNIX_SECONDS:
            raise InvalidRequest(f"'{name}' is out of range.")
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidRequest(f"'{name}' must be an ISO 8601 date-time.")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an ISO 8601 date-time.") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest(f"'{name}' is out of range.") from None


def app_json(app: AppRecord) -> dict[str, Any]:
    """An app: ``{id, name, slug, description, tier, verificationType, createdAt, updatedAt}``."""
    return {
        "id": app.id,
        "name": app.name,
        "slug": app.slug,
        "description": app.description,
        "tier": app.tier,
        "verificationType": verification_type(app.tier),
        "webhookUrl": app.webhook_url,
        "allowedOrigins": list(app.allowed_origins),
        "mode": app.mode,
        "createdAt": iso(app.created_at),
        "updatedAt": iso(app.updated_at),
    }


def device_json(device: DeviceRecord) -> dict[str, Any]:
    """A bound device: ``{hwuid, boundAt, lastSeenAt}``."""
    return {
        "hwuid": device.hwuid,
        "boundAt": iso(device.bound_at),
        "lastSeenAt": iso(device.last_seen_at),
    }


def license_json(lic: LicenseRecord, now: datetime) -> dict[str, Any]:
    """A license; ``status`` is its effective status at ``now`` (``EXPIRED`` once past)."""
    return {
        "id": lic.id,
        "appId": lic.app_id,
        "key": lic.key,
        "licenseKey": lic.key,
        "plan": lic.plan,
        "status": lic.effective_status(now),
        "issuedTo": lic.issued_to,
        "issuedEmail": lic.issued_email,
        "email": lic.issued_email,
        "expiresAt": iso(lic.expires_at),
        "features": list(lic.features),
        "metadata": lic.metadata,
        "maxDevices": lic.max_devices,
        "requireHwuid": lic.require_hwuid,
        "devices": [device_json(d) for d in lic.devices],
        "createdAt": iso(lic.created_at),
        "updatedAt": iso(lic.updated_at),
    }


def api_key_json(key: ApiKeyRecord, now: datetime | None = None) -> dict[str, Any]:
    """An API key's public fields; never its secret or hash. ``status`` is ``active``,
    ``revoked`` or ``expired`` at ``now``; ``appIds`` is ``null`` for a key of every app
    (``appId``: the one app of a key limited to one, for LicenseChain's SDKs)."""
    now = now or datetime.now(UTC)
    if key.revoked_at is not None:
        status = "revoked"
    elif key.expires_at is not None and key.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    app_ids = None if key.app_ids is None else sorted(key.app_ids)
    return {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "prefix": key.prefix,
        "environment": key.environment,
        "role": key.role,
        "scopes": list(key.scopes),
        "appIds": app_ids,
        "appId": app_ids[0] if app_ids is not None and len(app_ids) == 1 else None,
        "status": status,
        "createdAt": iso(key.created_at),
        "expiresAt": iso(key.expires_at),
        "lastUsedAt": iso(key.last_used_at),
        "lastUsedIp": key.last_used_ip,
        "usageCount": key.usage_count,
        "revokedAt": iso(key.revoked_at),
        "previousKeyExpiresAt": iso(key.previous_expires_at),
    }


def audit_event_json(event: AuditRecord) -> dict[str, Any]:
    """An audit event: ``{id, seq, action, actor: {kind, id, name, ip, userAgent},
    requestId, target, appId, data, personal, createdAt}`` (``ip``, ``userAgent`` and
    ``personal`` are null once erased; ``seq`` is null for an event older than the chain)."""
    return {
        "id": event.id,
        "seq": event.seq,
        "action": event.action,
        "actor": {
            "kind": event.actor_kind,
            "id": event.actor,
            "name": event.actor_name,
            "ip": event.actor_ip,
            "userAgent": event.actor_user_agent,
        },
        "requestId": event.request_id,
        "target": event.target,
        "appId": event.app_id,
        "data": event.data,
        "personal": event.personal,
        "createdAt": iso(event.created_at),
    }
