"""The /v1 HTTP API: one blueprint, ``bp``, with thin views (parse -> core/store -> JSON).

Importing this package adds every view module's routes to ``bp``; an issuer app registers
it at ``LICENSECHAIN_URL_PREFIX``. Each view is a plain module-level function that reads
its app's state with ``get_issuer_state()``.
"""

from __future__ import annotations

from . import admin, api_keys, audit_events, customers, licenses, openapi, public, webhooks
from .blueprint import BLUEPRINT_NAME, bp, root_bp

__all__ = [
    "BLUEPRINT_NAME",
    "admin",
    "api_keys",
    "audit_events",
    "bp",
    "customers",
    "licenses",
    "openapi",
    "public",
    "root_bp",
    "webhooks",
]
