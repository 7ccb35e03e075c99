"""API keys: the list (prefix, role or scopes, app restriction, environment, last used,
revoked), create (the secret shown once, in that one answer), revoke.

Creating a key asks for a recent second factor; a user can only create keys within its own
role, and an app-limited user only keys limited to one of its apps. An app-limited user
sees only the keys limited to its apps. Every action goes through ``key_actions``.
"""

from __future__ import annotations

from typing import Any, Final

from flask import abort, flash, redirect, render_template, url_for

from ...state import get_issuer_state
from ...store import ApiKeyRecord
from ..auth import requires_recent_mfa, requires_scope
from ..blueprint import bp
from . import key_actions
from .apps import visible_apps
from .common import check_app, console_actor, service_call, signed_in_user, visible_app_ids
from .forms import ApiKeyForm

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("API keys", "console.api_keys", "api-keys:read")


def visible_keys() -> list[ApiKeyRecord]:
    """The keys the user may see: all of them, or those limited to the user's apps."""
    keys = get_issuer_state().store.api_keys.list()
    allowed = visible_app_ids()
    if allowed is None:
        return keys
    mine = frozenset(allowed)
    return [key for key in keys if (apps := key_actions.key_apps(key)) and apps <= mine]


def visible_key(key_id: str) -> ApiKeyRecord:
    for key in visible_keys():
        if key.id == key_id:
            return key
    abort(404)


def _form(form: ApiKeyForm | None = None) -> ApiKeyForm:
    form = form or ApiKeyForm(formdata=None)
    user = signed_in_user()
    form.role.choices = [(role, role) for role in key_actions.allowed_roles(user)]
    every = [] if visible_app_ids() is not None else [("", "Every app")]
    form.app_id.choices = [*every, *((app.id, app.name) for app in visible_apps())]
    return form


def _page(
    form: ApiKeyForm | None = None,
    *,
    created: tuple[ApiKeyRecord, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return (
        render_template(
            "console/pages/api_keys.html",
            keys=visible_keys(),
            form=_form(form),
            created=created,
            apps={app.id: app for app in visible_apps()},
            key_apps=key_actions.key_apps,
            may_change=lambda key: key_actions.may_change(signed_in_user(), key),
        ),
        status,
    )


@bp.get("/api-keys")
@requires_scope("api-keys:read")
def api_keys() -> Any:
    return _page()


@bp.post("/api-keys")
@requires_scope("api-keys:write")
@requires_recent_mfa
def create_api_key() -> Any:
    form = _form(ApiKeyForm())
    if not form.validate():
        return _page(form, status=400)
    app_id = form.app_id.data or None
    if app_id is not None:
        check_app(app_id)
    with service_call() as outcome:
        created = key_actions.create_key(
            get_issuer_state().store,
            console_actor(),
            signed_in_user(),
            name=form.name.data or "",
            role=form.role.data or "",
            environment=form.environment.data or "live",
            app_id=app_id,
        )
    if not outcome.ok:
        return _page(form, status=outcome.status)
    # The secret is in this answer only (Cache-Control: no-store), never stored in clear.
    return _page(created=created, status=201)


@bp.post("/api-keys/<key_id>/revoke")
@requires_scope("api-keys:write")
def revoke_api_key(key_id: str) -> Any:
    key = visible_key(key_id)
    with service_call() as outcome:
        key_actions.revoke_key(get_issuer_state().store, console_actor(), signed_in_user(), key)
    if not outcome.ok:
        return _page(status=outcome.status)
    flash(f"API key {key.prefix}… revoked.", "info")
    return redirect(url_for("console.api_keys"), 303)
