"""The app and license objects of the wire contract, written out from the contract (not from
our code), shared by the API and CLI tests."""

from __future__ import annotations

APP_FIELDS = frozenset(
    {"id", "name", "slug", "description", "tier", "verificationType", "createdAt", "updatedAt"}
)

LICENSE_FIELDS = frozenset(
    {
        "id",
        "appId",
        "key",
        "licenseKey",
        "plan",
        "status",
        "issuedTo",
        "issuedEmail",
        "email",
        "expiresAt",
        "features",
        "metadata",
        "maxDevices",
        "requireHwuid",
        "devices",
        "createdAt",
        "updatedAt",
    }
)
