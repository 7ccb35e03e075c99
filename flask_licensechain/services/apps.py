"""App changes: create, update, delete (``app.create``, ``app.update``, ``app.delete``).

Each runs in one unit of work with its audit event; the public endpoints' CORS allow-list
(built from the apps' ``allowed_origins``) is refreshed once the change has committed.
"""

from __future__ import annotations

from typing import Any, Final

from ..core.errors import NotFound
from ..state import IssuerState
from ..store import Actor, AppRecord, Change
from . import diff, plain, redacted_url

#: the app fields an audit event records (an app holds no personal data; ``webhook_url``
#: as ``redacted_url``)
APP_FIELDS: Final = ("name", "description", "tier", "webhook_url", "allowed_origins")
#: license ids per ``IN`` list (under the drivers' parameter limits)
_BATCH: Final = 500


def _fields(app: AppRecord) -> dict[str, Any]:
    fields = {name: plain(getattr(app, name)) for name in (*APP_FIELDS, "slug", "mode")}
    fields["webhook_url"] = redacted_url(app.webhook_url)
    return fields


def _checked_destination(state: IssuerState, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with a set ``webhook_url`` passed through the webhooks' destination policy
    (``webhooks/ssrf.py``; ``InvalidRequest`` when refused): it becomes an endpoint."""
    url = fields.get("webhook_url")
    if isinstance(url, str) and url and state.webhooks is not None:
        return {**fields, "webhook_url": state.webhooks.policy.check_url(url)}
    return fields


def create_app(state: IssuerState, actor: Actor, *, name: str, **fields: Any) -> AppRecord:
    """A new app (``fields``: ``description``, ``tier``, ``webhook_url``,
    ``allowed_origins``). Raises ``InvalidRequest`` for a bad field or a refused webhook
    destination, ``Conflict`` when no slug is free, ``Unavailable`` (nothing written) when
    the store or the audit write fails."""
    fields = _checked_destination(state, fields)
    with state.store.unit_of_work(actor) as unit:
        app = state.store.apps.create(name, **fields)
        unit.record(
            Change(
                action="app.create", target=app.id, app_id=app.id, data=_fields(app), subject=app
            )
        )
        unit.after_commit(state.cors_origins.invalidate)
    return app


def update_app(state: IssuerState, actor: Actor, app_id: str, **changes: Any) -> AppRecord:
    """Change the given fields of an app (none: the app as it is, nothing recorded).
    ``data``: ``{"changes": {field: [before, after]}}``. Raises ``NotFound``,
    ``InvalidRequest`` (also for a refused webhook destination), ``Unavailable``."""
    changes = _checked_destination(state, changes)
    store = state.store
    with store.unit_of_work(actor) as unit:
        before = store.apps.get(app_id)
        if before is None:
            raise NotFound("App not found.")
        if not changes:
            return before
        after = store.apps.update(app_id, **changes)
        if after is None:
            raise NotFound("App not found.")
        changed = diff(_fields(before), _fields(after), APP_FIELDS)
        unit.record(
            Change(
                action="app.update",
                target=app_id,
                app_id=app_id,
                data={"changes": changed},
                subject=after,
            )
        )
        unit.after_commit(state.cors_origins.invalidate)
    return after


def delete_app(state: IssuerState, actor: Actor, app_id: str) -> AppRecord:
    """Delete an app whose licenses are all revoked; the API keys limited to it are revoked
    with it. The audit events about its licenses lose their personal columns (client IPs,
    user agents, e-mails, hardware ids; outside the chain's MAC): with the licenses gone,
    no customer's erasure could find them any more (storage limitation, GDPR Art. 5(1)(e)).
    Raises ``NotFound``, ``Conflict`` (a license is not revoked), ``Unavailable``."""
    store = state.store
    with store.unit_of_work(actor) as unit:
        license_ids = store.licenses.ids_of_app(app_id)
        app = store.apps.delete(app_id)
        for start in range(0, len(license_ids), _BATCH):
            store.audit.erase_personal(unit.conn, targets=license_ids[start : start + _BATCH])
        unit.record(
            Change(
                action="app.delete",
                target=app.id,
                app_id=app.id,
                data=_fields(app),
                subject=app,
            )
        )
        unit.after_commit(state.cors_origins.invalidate)
    return app
