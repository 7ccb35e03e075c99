"""Every limit on a field the API accepts and the store keeps, in one table.

The /v1 endpoints check request fields against these, the store refuses values beyond
them (its last check before the database), and the OpenAPI document publishes them: all
three read this module, so they cannot disagree. Lengths are in characters, sizes in bytes.

The feature limits also bound the license token: a license at every limit still gets a
token under the verifiers' default ``LICENSECHAIN_MAX_TOKEN_BYTES`` (8192 bytes), so no
license can be issued whose tokens every gate would refuse.
"""

from __future__ import annotations

from typing import Final

#: app and API-key names
NAME: Final = 200
#: an app's description
DESCRIPTION: Final = 2000
#: a license's plan and the licensee's name (``issuedTo``)
PLAN: Final = 200
ISSUED_TO: Final = 200
#: an e-mail address (RFC 5321: 64 for the local part, 1, 255 for the domain)
EMAIL: Final = 320
#: features per license, and characters per feature (both travel in every token)
FEATURES: Final = 64
FEATURE: Final = 64
#: a license's ``metadata`` object, as compact JSON
METADATA_BYTES: Final = 16 * 1024
#: how deep metadata objects and arrays may nest (every walk over it stays far from
#: Python's recursion limit)
METADATA_DEPTH: Final = 32
#: the highest ``maxDevices`` of a license
MAX_DEVICES: Final = 10_000
#: a hardware id
HWUID: Final = 256
#: a license key as sent by a client (real keys are 23; the store answers "not found")
LICENSE_KEY: Final = 256
#: an app id in a request body or query
APP_ID: Final = 128
#: any id looked up in the store (ids, keys and kids are far shorter)
LOOKUP: Final = 256
#: a token id (``jti``) sent for revocation
JTI: Final = 256
#: the free-text reason of a revocation
REASON: Final = 2000
#: the client's User-Agent as recorded in a verification answer (longer is cut)
USER_AGENT: Final = 512
#: scopes per API key, and characters per scope
SCOPES: Final = 32
SCOPE: Final = 32
#: list pagination: ``page`` and ``limit`` (items per page) query parameters
PAGE: Final = 1_000_000
PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 50
#: audit events per store read
AUDIT_PAGE: Final = 1000
#: an app's webhook URL
WEBHOOK_URL: Final = 2048
#: an app's allowed CORS origins, and characters per origin
ORIGINS: Final = 100
ORIGIN: Final = 255
#: apps one API key may be limited to
API_KEY_APPS: Final = 100
