"""Store records as the contract's JSON objects (CONTRACT.md section 2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..core.contract import verification_type
from ..store.records import ApiKeyRecord, AppRecord, DeviceRecord, LicenseRecord


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
    return iso(datetime.fromtimestamp(seconds, UTC))


def unix(value: datetime) -> int:
    return int(value.timestamp())


def app_json(app: AppRecord) -> dict[str, Any]:
    return {
        "id": app.id,
        "name": app.name,
        "slug": app.slug,
        "description": app.description,
        "tier": app.tier,
        "verificationType": verification_type(app.tier),
        "webhookUrl": app.webhook_url,
        "allowedOrigins": list(app.allowed_origins),
        "createdAt": iso(app.created_at),
        "updatedAt": iso(app.updated_at),
    }


def device_json(device: DeviceRecord) -> dict[str, Any]:
    return {
        "hwuid": device.hwuid,
        "boundAt": iso(device.bound_at),
        "lastSeenAt": iso(device.last_seen_at),
    }


def license_json(lic: LicenseRecord, now: datetime) -> dict[str, Any]:
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


def api_key_json(key: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "createdAt": iso(key.created_at),
        "lastUsedAt": iso(key.last_used_at),
        "revokedAt": iso(key.revoked_at),
    }
