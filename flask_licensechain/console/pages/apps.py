"""Apps: the list, create, edit (name, description, seller tier) and, when the store knows
it, the app's mode (``test`` or ``live``, set at creation).

Changes go through ``services.apps``, as the API's do. Only a user of every app may create
one; an app-limited user sees and edits its apps only (others are 404).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from flask import flash, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from ...core.contract import verification_type
from ...services import apps as app_service
from ...state import get_issuer_state
from ...store import AppRecord
from ..auth import requires_scope
from ..blueprint import bp
from .common import check_app, check_unrestricted, console_actor, service_call, visible_app_ids
from .forms import AppForm

#: whether apps have a mode (``test``/``live``) in this version of the store
HAS_MODE: Final = "mode" in {field.name for field in dataclasses.fields(AppRecord)}

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Apps", "console.apps", "apps:read")


def visible_apps() -> list[AppRecord]:
    """The apps the signed-in user may see, oldest first."""
    apps = get_issuer_state().store.apps.list()
    allowed = visible_app_ids()
    return apps if allowed is None else [app for app in apps if app.id in allowed]


def visible_app(app_id: str) -> AppRecord:
    """The app ``app_id`` if the user may see it, else 404."""
    check_app(app_id)
    app = get_issuer_state().store.apps.get(app_id)
    check_app(None if app is None else app.id)
    assert app is not None
    return app


def _page(form: AppForm, status: int = 200) -> tuple[str, int]:
    return (
        render_template(
            "console/pages/apps.html",
            apps=visible_apps(),
            form=form,
            has_mode=HAS_MODE,
            verification_type=verification_type,
        ),
        status,
    )


@bp.get("/apps")
@requires_scope("apps:read")
def apps() -> Any:
    return _page(AppForm())


@bp.post("/apps")
@requires_scope("apps:write")
def create_app() -> Any:
    check_unrestricted("create apps")
    form = AppForm()
    if not form.validate():
        return _page(form, 400)
    with service_call() as outcome:
        app = app_service.create_app(
            get_issuer_state(),
            console_actor(),
            name=form.name.data or "",
            description=form.description.data or None,
            tier=form.tier.data,
            mode=form.mode.data,
        )
    if not outcome.ok:
        return _page(form, outcome.status)
    flash(f"App {app.name} created.", "info")
    return redirect(url_for("console.app_detail", app_id=app.id), 303)


def _detail(app: AppRecord, form: AppForm, status: int = 200) -> tuple[str, int]:
    stats = get_issuer_state().store.licenses.stats(app_id=app.id)
    return (
        render_template(
            "console/pages/app.html",
            app=app,
            form=form,
            stats=stats,
            has_mode=HAS_MODE,
            verification_type=verification_type,
        ),
        status,
    )


@bp.get("/apps/<app_id>")
@requires_scope("apps:read")
def app_detail(app_id: str) -> Any:
    app = visible_app(app_id)
    return _detail(app, AppForm(obj=app))


@bp.post("/apps/<app_id>")
@requires_scope("apps:write")
def update_app(app_id: str) -> Any:
    app = visible_app(app_id)
    form = AppForm()
    if not form.validate():
        return _detail(app, form, 400)
    changes = {
        "name": form.name.data,
        "description": form.description.data or None,
        "tier": form.tier.data,
    }
    changed = {key: value for key, value in changes.items() if getattr(app, key) != value}
    with service_call() as outcome:
        app = app_service.update_app(get_issuer_state(), console_actor(), app.id, **changed)
    if not outcome.ok:
        return _detail(app, form, outcome.status)
    flash("App saved." if changed else "Nothing changed.", "info")
    return _redirect_to(app.id)


def _redirect_to(app_id: str) -> BaseResponse:
    return redirect(url_for("console.app_detail", app_id=app_id), 303)
