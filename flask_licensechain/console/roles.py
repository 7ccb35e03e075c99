"""Console roles and the scopes each one grants: the ONE place the console reads them.

TEMPORARY: issue 11 (roles as scope bundles, shared by API keys and the console) owns the
real role table. When it lands on main, replace ``ROLE_SCOPES`` below by an import of the
shared mapping; nothing else in the console names a scope list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

ROLES: Final = ("owner", "admin", "developer", "support", "auditor", "readonly")

_READ: Final = ("apps:read", "licenses:read", "api-keys:read", "audit:read", "webhooks:read")

#: role -> the scopes it grants (the API keys' scope names; ``*`` is every scope).
ROLE_SCOPES: Final[Mapping[str, frozenset[str]]] = {
    "owner": frozenset({"*", "users:manage"}),
    "admin": frozenset(
        {
            *_READ,
            "apps:write",
            "licenses:write",
            "tokens:revoke",
            "keys:rotate",
            "api-keys:write",
            "webhooks:write",
            "customers:read",
            "customers:erase",
        }
    ),
    "developer": frozenset(
        {
            *_READ,
            "apps:write",
            "licenses:write",
            "tokens:revoke",
            "api-keys:write",
            "webhooks:write",
        }
    ),
    "support": frozenset(
        {"apps:read", "licenses:read", "licenses:write", "tokens:revoke", "customers:read"}
    ),
    "auditor": frozenset({*_READ}),
    "readonly": frozenset({"apps:read", "licenses:read"}),
}

#: roles that may never go without a second factor (all do today; kept for the rule's sake)
MFA_MANDATORY: Final = frozenset({"owner", "admin"})


def check_role(role: object) -> str:
    """``role`` when it is one of ``ROLES``; else ``ValueError`` naming them."""
    if not isinstance(role, str) or role not in ROLE_SCOPES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def role_allows(role: str, scope: str) -> bool:
    """Whether ``role`` grants ``scope``; ``*`` grants every scope (only ``owner`` has it)."""
    granted = ROLE_SCOPES.get(role, frozenset())
    return scope in granted or "*" in granted
