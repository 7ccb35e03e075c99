"""Scopes and roles: the one list of what an admin credential may do, and the role bundles.

A credential (an API key, or a console user through its role) holds scopes. Each scope
guards at least one endpoint (``tests/test_roles.py`` walks the URL map to prove it);
``*`` grants every scope, those added later included.

Roles are named bundles, as Keygen's and Unkey's key roles are:

========== =================================================================================
owner      ``*``: everything, including making and changing other owner keys
admin      every scope but ``*``: so it can neither create nor change an owner key
developer  apps and licenses (``apps:*``, ``licenses:*``, ``tokens:revoke``); no key rotation
support    read apps and licenses, suspend and activate licenses, release devices
auditor    ``audit:read`` only
readonly   every ``:read`` scope but the audit log's (it carries people's data)
========== =================================================================================

Some scopes imply finer ones (``IMPLIED``), so that keys made before the finer scope existed
keep every right they had: ``licenses:write`` implies ``licenses:suspend`` and
``devices:write``; ``api-keys:write`` implies ``api-keys:read``.

``Rights`` is what one credential may reach: scopes, environment (``live`` keys act on live
apps, ``test`` keys on test apps) and app restriction (a set of app ids, or every app).
``exceeds(holder, wanted)`` says why ``wanted`` reaches further than ``holder``: no key can
create, or change, a key with more rights than its own (the principle of least privilege,
OWASP ASVS 4.0 V4.1.3; Stripe's restricted keys follow the same rule).

This module is pure: no Flask, no store.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from .core.errors import InvalidRequest

ALL_SCOPES: Final = "*"

#: Every scope a credential can hold, in the order the docs list them; ``*`` is all of them.
SCOPES: Final = (
    "apps:read",
    "apps:write",
    "licenses:read",
    "licenses:write",
    "licenses:suspend",
    "devices:write",
    "tokens:revoke",
    "keys:rotate",
    "api-keys:read",
    "api-keys:write",
    "audit:read",
    "webhooks:read",
    "webhooks:write",
    "customers:read",
    "customers:erase",
    "metrics:read",
    "users:admin",
    ALL_SCOPES,
)

#: scope -> the finer scopes it carries with it (see the module docstring)
IMPLIED: Final[Mapping[str, tuple[str, ...]]] = {
    "licenses:write": ("licenses:suspend", "devices:write"),
    "api-keys:write": ("api-keys:read",),
}

#: role -> its scopes
ROLES: Final[Mapping[str, tuple[str, ...]]] = {
    "owner": (ALL_SCOPES,),
    "admin": tuple(scope for scope in SCOPES if scope != ALL_SCOPES),
    "developer": ("apps:read", "apps:write", "licenses:read", "licenses:write", "tokens:revoke"),
    "support": ("apps:read", "licenses:read", "licenses:suspend", "devices:write"),
    "auditor": ("audit:read",),
    "readonly": ("apps:read", "licenses:read", "api-keys:read", "webhooks:read"),
}
ROLE_NAMES: Final = tuple(ROLES)
ENVIRONMENTS: Final = ("live", "test")


def grants(held: Collection[str], scope: str) -> bool:
    """Whether the scopes ``held`` grant ``scope``: directly, through ``*``, or through a
    scope that implies it (``IMPLIED``)."""
    if ALL_SCOPES in held or scope in held:
        return True
    return any(scope in IMPLIED.get(have, ()) for have in held)


def check_scopes(scopes: object) -> tuple[str, ...]:
    """``scopes`` as a tuple of known scopes, in order, each once.

    Raises ``InvalidRequest`` for anything but a non-empty collection of known scopes (a
    bare string or a mapping is refused: ``"*"`` must never iterate into a grant).
    """
    if isinstance(scopes, str | bytes | Mapping) or not isinstance(scopes, Iterable):
        raise InvalidRequest("scopes must be a list of strings.")
    result: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or scope not in SCOPES:
            raise InvalidRequest(f"Unknown scope {scope!r}; valid scopes: {', '.join(SCOPES)}.")
        if scope not in result:
            result.append(scope)
    if not result:
        raise InvalidRequest("An API key needs at least one scope.")
    return tuple(result)


def role_scopes(role: object) -> tuple[str, ...]:
    """The scopes of ``role``; ``InvalidRequest`` for an unknown role."""
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidRequest(f"Unknown role {role!r}; roles: {', '.join(ROLE_NAMES)}.")
    return ROLES[role]


def role_of(scopes: Collection[str]) -> str | None:
    """The role whose scopes are exactly ``scopes`` (as a set), or ``None``."""
    wanted = set(scopes)
    for name, bundle in ROLES.items():
        if set(bundle) == wanted:
            return name
    return None


@dataclass(frozen=True, slots=True)
class Rights:
    """What one credential may reach.

    ``scopes``: the scopes it holds; ``environment``: ``live`` or ``test``; ``app_ids``: the
    apps it is limited to (``None``: every app of its environment); ``expires_at``: when it
    stops working (``None``: never).
    """

    scopes: tuple[str, ...]
    environment: str = "live"
    app_ids: frozenset[str] | None = None
    expires_at: datetime | None = None


def exceeds(holder: Rights, wanted: Rights) -> list[str]:
    """Why ``wanted`` reaches further than ``holder`` (empty: it does not).

    ``wanted`` may not hold a scope ``holder`` lacks, act on live apps when ``holder`` acts
    on test apps only, reach an app outside ``holder``'s restriction (or every app when
    ``holder`` is limited), nor outlive ``holder`` when ``holder`` expires. A ``live`` holder
    may create ``test`` keys (it then manages them with them, or with the CLI).
    """
    reasons: list[str] = []
    missing = [scope for scope in wanted.scopes if not grants(holder.scopes, scope)]
    if missing:
        reasons.append("scopes it does not hold: " + ", ".join(missing))
    if holder.environment == "test" and wanted.environment != "test":
        reasons.append("live apps (it is an lc_test_ key)")
    if holder.app_ids is not None:
        if wanted.app_ids is None:
            reasons.append("every app (it is limited to some apps)")
        elif not wanted.app_ids <= holder.app_ids:
            reasons.append("apps outside its own restriction")
    if holder.expires_at is not None and (
        wanted.expires_at is None or wanted.expires_at > holder.expires_at
    ):
        reasons.append("a lifetime beyond its own expiry")
    return reasons


def sees(holder: Rights, other: Rights) -> bool:
    """Whether ``holder`` may see ``other`` (list and show it): ``other`` is of the same
    environment (a live key does not see test keys: their app ids name test apps) and
    within ``holder``'s app restriction. Its scopes may be wider: then ``holder`` sees it
    but cannot change it."""
    if holder.environment != other.environment:
        return False
    if holder.app_ids is None:
        return True
    return other.app_ids is not None and other.app_ids <= holder.app_ids


__all__ = [
    "ALL_SCOPES",
    "ENVIRONMENTS",
    "IMPLIED",
    "ROLES",
    "ROLE_NAMES",
    "SCOPES",
    "Rights",
    "check_scopes",
    "exceeds",
    "grants",
    "role_of",
    "role_scopes",
    "sees",
]
