"""The API-key actions of the console, in one place: the ONE adapter between the API-keys
page and the API-key service.

TEMPORARY: ``services/api_keys.py`` (issue 11) is not on main yet. Until it is, these
functions do what the API's ``POST /v1/api-keys`` does today (``ApiKeyRepository.create``,
``revoke``), inside ``store.unit_of_work(actor)`` so that the change and its
``api_key.*`` audit event commit together. When the service lands, each body becomes one
call to it.

A console user can only hand out what its own role holds (no privilege escalation, OWASP
ASVS 4.0 V4.1.3): ``allowed_roles`` lists the key roles within the user's role.
"""

from __future__ import annotations

from typing import Final

from ...core.errors import InsufficientScope, NotFound
from ...store import Actor, ApiKeyRecord, Change, Store
from ...store.api_keys import API_KEY_SCOPES
from ..repository import ConsoleUser
from ..roles import ROLE_SCOPES, ROLES, role_allows

#: key roles offered by the form (the console's roles)
KEY_ROLES: Final = ROLES


def role_key_scopes(role: str) -> tuple[str, ...]:
    """The API scopes a key of ``role`` gets."""
    granted = ROLE_SCOPES[role]
    if "*" in granted:
        return ("*",)
    return tuple(scope for scope in API_KEY_SCOPES if scope in granted)


def allowed_roles(user: ConsoleUser) -> list[str]:
    """The key roles the user may create: those whose every scope its role holds."""
    return [
        role
        for role in KEY_ROLES
        if all(role_allows(user.role, scope) for scope in role_key_scopes(role))
    ]


def may_change(user: ConsoleUser, key: ApiKeyRecord) -> bool:
    """Whether the user may revoke ``key``: it reaches no further than the user."""
    return all(role_allows(user.role, scope) for scope in key.scopes)


def key_apps(key: ApiKeyRecord) -> frozenset[str] | None:
    """The apps a key is limited to (``None``: every app)."""
    return None if key.app_ids is None else frozenset(key.app_ids)


def _single_app(key: ApiKeyRecord) -> str | None:
    """The app of a key limited to exactly one (the app its changes are filed under)."""
    return next(iter(key.app_ids)) if key.app_ids is not None and len(key.app_ids) == 1 else None


def _facts(key: ApiKeyRecord) -> dict[str, object]:
    return {
        "name": key.name,
        "scopes": list(key.scopes),
        "environment": key.environment,
        "appIds": None if key.app_ids is None else sorted(key.app_ids),
    }


def create_key(
    store: Store,
    actor: Actor,
    user: ConsoleUser,
    *,
    name: str,
    role: str,
    environment: str,
    app_id: str | None,
) -> tuple[ApiKeyRecord, str]:
    """A new key of ``role`` and its secret (shown once). ``InsufficientScope`` when the
    role reaches beyond ``user_role``; ``InvalidRequest`` for a bad field."""
    if role not in allowed_roles(user):
        raise InsufficientScope(f"Your role cannot create a key of role {role}.")
    with store.unit_of_work(actor) as unit:
        record, plaintext = store.api_keys.create(
            name, role_key_scopes(role), environment=environment, app_id=app_id
        )
        unit.record(
            Change(
                action="api_key.create",
                target=record.id,
                app_id=app_id,
                data={**_facts(record), "role": role},
                subject=record,
            )
        )
    return record, plaintext


def revoke_key(store: Store, actor: Actor, user: ConsoleUser, key: ApiKeyRecord) -> ApiKeyRecord:
    """Revoke the key (at once: every request reads the store). ``NotFound``,
    ``InsufficientScope`` (a key reaching further than the user)."""
    if not may_change(user, key):
        raise InsufficientScope("Your role cannot revoke a key with more rights than its own.")
    key_id = key.id
    with store.unit_of_work(actor) as unit:
        if store.api_keys.get(key_id) is None:
            raise NotFound("API key not found.")
        revoked = store.api_keys.revoke(key_id)
        after = store.api_keys.get(key_id)
        assert after is not None
        if revoked:
            unit.record(
                Change(
                    action="api_key.revoke",
                    target=key_id,
                    app_id=_single_app(after),
                    data=_facts(after),
                    subject=after,
                )
            )
    return after
