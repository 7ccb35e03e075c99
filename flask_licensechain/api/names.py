"""The names a request member is accepted under: the contract's name first, then the
aliases LicenseChain's clients send (camelCase, older names)."""

from __future__ import annotations

from typing import Final

#: the license key
KEY_FIELDS: Final = ("key", "licenseKey", "license_key")
#: the hardware id
HWUID_FIELDS: Final = ("hwuid", "hardwareId")
#: the app id a key must belong to
APP_ID_FIELDS: Final = ("app_id", "appId")
#: a license token
TOKEN_FIELDS: Final = ("license_token", "token")
