"""Console roles: a console user's role is one of the shared roles (``flask_licensechain/
roles.py``, the one table API keys use too), and grants the same scopes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .. import roles as shared

ROLES: Final = shared.ROLE_NAMES

#: role -> the scopes it grants (the API keys' scope names; ``*`` is every scope).
ROLE_SCOPES: Final[Mapping[str, frozenset[str]]] = {
    name: frozenset(scopes) for name, scopes in shared.ROLES.items()
}

#: roles that may never go without a second factor (all do today; kept for the rule's sake)
MFA_MANDATORY: Final = frozenset({"owner", "admin"})


def check_role(role: object) -> str:
    """``role`` when it is one of ``ROLES``; else ``ValueError`` naming them."""
    if not isinstance(role, str) or role not in ROLE_SCOPES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def role_allows(role: str, scope: str) -> bool:
    """Whether ``role`` grants ``scope`` (``roles.grants``: ``*`` and implied scopes count;
    only ``owner`` has ``*``)."""
    return shared.grants(ROLE_SCOPES.get(role, frozenset()), scope)
