"""The app and license objects of the wire contract, written out from the contract (not from
our code), shared by the API and CLI tests."""

from __future__ import annotations

APP_FIELDS = frozenset(
    {
        "id",
        "name",
        "slug",
        "description",
        "tier",
        "verificationType",
        # POST /v1/apps accepts webhook_url and allowed_origins; the app object gives them back
        "webhookUrl",
        "allowedOrigins",
        # issue 11: live or test, set at creation
        "mode",
        "createdAt",
        "updatedAt",
    }
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
