"""API-key lifecycle: create, update, rotate, revoke, and an app's own key.

Each function runs in ``store.unit_of_work(actor)`` and records its ``api_key.*`` change
(``create``, ``update``, ``rotate``, ``revoke``) in the same transaction. ``creator`` is the
API key acting (``None`` for the CLI, which may do anything): no key can create, change,
rotate or revoke a key with more rights than its own (``roles.exceeds``), and a key it may
not see (another environment, apps outside its restriction) is "not found".

Secrets never enter a ``Change``: the data holds ids, scopes, the role, the environment,
the app restriction and times.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ..core.errors import InsufficientScope, NotFound
from ..roles import Rights, check_scopes, exceeds, role_scopes, sees
from ..serialize import iso
from ..store import Actor, ApiKeyRecord, Change, Store
from ..store.api_keys import DEFAULT_ROTATION_GRACE


def _facts(key: ApiKeyRecord) -> dict[str, Any]:
    return {
        "name": key.name,
        "role": key.role,
        "scopes": list(key.scopes),
        "environment": key.environment,
        "appIds": None if key.app_ids is None else sorted(key.app_ids),
        "expiresAt": iso(key.expires_at),
    }


def _app_of(key: ApiKeyRecord) -> str | None:
    """The app a change of ``key`` belongs to (for app-limited readers of the audit log):
    the one app of a key limited to one, else none."""
    if key.app_ids is not None and len(key.app_ids) == 1:
        return next(iter(key.app_ids))
    return None


def _refuse_beyond(creator: ApiKeyRecord | None, wanted: Rights, what: str) -> None:
    if creator is None:
        return
    reasons = exceeds(creator.rights(), wanted)
    if reasons:
        raise InsufficientScope(
            f"This API key cannot {what} a key that reaches " + "; ".join(reasons) + "."
        )


def visible_key(store: Store, creator: ApiKeyRecord | None, key_id: str) -> ApiKeyRecord:
    """The key ``key_id`` when ``creator`` may see it (``roles.sees``), else ``NotFound``."""
    key = store.api_keys.get(key_id)
    if key is None or (creator is not None and not sees(creator.rights(), key.rights())):
        raise NotFound("API key not found.")
    return key


def visible_keys(store: Store, creator: ApiKeyRecord | None) -> list[ApiKeyRecord]:
    """Every key ``creator`` may see, oldest first."""
    keys = store.api_keys.list()
    if creator is None:
        return keys
    rights = creator.rights()
    return [key for key in keys if sees(rights, key.rights())]


def create_key(
    store: Store,
    actor: Actor,
    *,
    creator: ApiKeyRecord | None,
    name: str,
    scopes: Iterable[str] | None = None,
    role: str | None = None,
    description: str | None = None,
    environment: str | None = None,
    app_ids: Iterable[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKeyRecord, str]:
    """A new key and its secret (shown once). Without ``environment`` it is the creator's
    (``live`` from the CLI); without ``app_ids`` it has the creator's app restriction.
    Raises ``InvalidRequest`` (bad fields), ``InsufficientScope`` (more rights than the
    creator), ``NotFound`` (an app that does not exist in the key's environment)."""
    if environment is None:
        environment = creator.environment if creator is not None else "live"
    if app_ids is None and creator is not None:
        app_ids = creator.app_ids
    granted = role_scopes(role) if role is not None else check_scopes(scopes)
    wanted = Rights(
        granted, environment, None if app_ids is None else frozenset(app_ids), expires_at
    )
    _refuse_beyond(creator, wanted, "create")
    with store.unit_of_work(actor) as unit:
        record, plaintext = store.api_keys.create(
            name,
            None if role is not None else granted,
            role=role,
            description=description,
            environment=environment,
            app_ids=app_ids,
            expires_at=expires_at,
        )
        unit.record(
            Change(
                action="api_key.create",
                target=record.id,
                app_id=_app_of(record),
                data=_facts(record),
                subject=record,
            )
        )
    return record, plaintext


def update_key(
    store: Store, actor: Actor, key_id: str, *, creator: ApiKeyRecord | None, **changes: Any
) -> ApiKeyRecord:
    """Change a key's ``name``, ``description`` or ``expires_at``. ``NotFound``,
    ``InsufficientScope`` (a key with more rights, or an expiry beyond the creator's),
    ``InvalidRequest``."""
    with store.unit_of_work(actor) as unit:
        before = visible_key(store, creator, key_id)
        wanted = before.rights()
        if "expires_at" in changes:
            wanted = Rights(
                wanted.scopes, wanted.environment, wanted.app_ids, changes["expires_at"]
            )
        _refuse_beyond(creator, wanted, "change")
        after = store.api_keys.update(key_id, **changes)
        if after is None:
            raise NotFound("API key not found.")
        diff = {
            field: [_shown(getattr(before, field)), _shown(getattr(after, field))]
            for field in sorted(changes)
            if getattr(before, field) != getattr(after, field)
        }
        if diff:
            unit.record(
                Change(
                    action="api_key.update",
                    target=key_id,
                    app_id=_app_of(after),
                    data={"changes": diff},
                    subject=after,
                )
            )
    return after


def _shown(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def rotate_key(
    store: Store,
    actor: Actor,
    key_id: str,
    *,
    creator: ApiKeyRecord | None,
    grace: timedelta = DEFAULT_ROTATION_GRACE,
) -> tuple[ApiKeyRecord, str]:
    """A new secret for the key, shown once; the old one works for ``grace`` more (0: it
    stops now). ``NotFound``, ``InsufficientScope``, ``Conflict`` (revoked),
    ``InvalidRequest`` (a grace outside 0 to 30 days)."""
    with store.unit_of_work(actor) as unit:
        key = visible_key(store, creator, key_id)
        _refuse_beyond(creator, key.rights(), "rotate")
        record, plaintext = store.api_keys.rotate(key_id, grace=grace)
        unit.record(
            Change(
                action="api_key.rotate",
                target=key_id,
                app_id=_app_of(record),
                data={
                    "graceSeconds": int(grace.total_seconds()),
                    "previousExpiresAt": iso(record.previous_expires_at),
                },
                subject=record,
            )
        )
    return record, plaintext


def revoke_key(
    store: Store, actor: Actor, key_id: str, *, creator: ApiKeyRecord | None
) -> ApiKeyRecord:
    """Revoke the key (both secrets, at once in every process: the check reads the store
    on each request). Idempotent: revoking twice records one change. ``NotFound``,
    ``InsufficientScope``."""
    with store.unit_of_work(actor) as unit:
        key = visible_key(store, creator, key_id)
        _refuse_beyond(creator, key.rights(), "revoke")
        if store.api_keys.revoke(key_id):
            key = visible_key(store, None, key_id)
            unit.record(
                Change(
                    action="api_key.revoke",
                    target=key_id,
                    app_id=_app_of(key),
                    data=_facts(key),
                    subject=key,
                )
            )
    return key


def replace_app_key(
    store: Store,
    actor: Actor,
    app_id: str,
    *,
    creator: ApiKeyRecord | None,
    name: str,
    scopes: tuple[str, ...],
) -> tuple[ApiKeyRecord, str, list[str]]:
    """A new key limited to ``app_id`` (in the creator's environment), and the app's
    previous keys (limited to exactly that app, within the creator's rights) revoked:
    ``(record, secret, revoked ids)``. ``InsufficientScope``, ``NotFound``."""
    environment = creator.environment if creator is not None else "live"
    wanted = Rights(scopes, environment, frozenset({app_id}))
    _refuse_beyond(creator, wanted, "create")
    rights = None if creator is None else creator.rights()

    def may_revoke(key: ApiKeyRecord) -> bool:
        return rights is None or not exceeds(rights, key.rights())

    with store.unit_of_work(actor) as unit:
        record, plaintext, revoked = store.api_keys.replace_app_key(
            app_id, name, scopes, environment=environment, may_revoke=may_revoke
        )
        for old in revoked:
            unit.record(Change(action="api_key.revoke", target=old, app_id=app_id))
        unit.record(
            Change(
                action="api_key.create",
                target=record.id,
                app_id=app_id,
                data={**_facts(record), "replaces": revoked},
                subject=record,
            )
        )
    return record, plaintext, revoked
