"""Licenses: search by key, email or id; create; edit plan, features and expiry; revoke,
suspend, activate, extend; the bound devices, each with a release button.

Every change goes through ``services.licenses``, the API's own path: the same 409 rules,
revocation records, denylist announcements and audit events. Suspend and activate need
``licenses:suspend``, a device release ``devices:write``, the rest ``licenses:write``
(the scopes of ``roles.py``). An app-limited user sees the licenses of its apps only.
"""

from __future__ import annotations

import json
from typing import Any, Final

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ... import field_limits as limits
from ...services import licenses as license_service
from ...state import get_issuer_state
from ...store import LicenseRecord
from ...store.schema import licenses as licenses_table
from ..auth import requires_scope, user_may_access_app
from ..blueprint import bp
from .apps import visible_apps
from .common import check_app, console_actor, now, service_call, visible_app_ids
from .forms import (
    ExtendForm,
    LicenseCreateForm,
    LicenseFieldsForm,
    LicenseSearchForm,
    ReasonForm,
    parse_when,
    split_list,
)

#: licenses per page
PAGE_SIZE: Final = limits.DEFAULT_PAGE_SIZE
#: button -> (status, scope); the one table the status routes and the template read
STATUS_ACTIONS: Final = {
    "suspend": ("SUSPENDED", "licenses:suspend"),
    "activate": ("ACTIVE", "licenses:suspend"),
}

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Licenses", "console.licenses", "licenses:read")


def _by_email(email: str, app_ids: list[str] | None) -> list[LicenseRecord]:
    """The licenses issued to ``email`` (case-insensitive), newest first, at most a page."""
    table = licenses_table
    statement = (
        sa.select(table.c.id)
        .where(sa.func.lower(table.c.issued_email) == email.strip().lower())
        .order_by(table.c.created_at.desc())
        .limit(PAGE_SIZE)
    )
    if app_ids is not None:
        statement = statement.where(table.c.app_id.in_(app_ids))
    store = get_issuer_state().store
    with store.database.single() as conn:
        ids = list(conn.scalars(statement))
    found = (store.licenses.get(license_id) for license_id in ids)
    return [lic for lic in found if lic is not None]


def search(
    query: str, *, app_id: str | None, status: str | None, page: int
) -> tuple[list[LicenseRecord], int]:
    """The licenses matching ``query`` (a key, an id or an email; empty: all), of
    ``app_id`` or of every app the user sees, with ``status``; and their total."""
    allowed = visible_app_ids()
    app_ids = [app_id] if app_id else (list(allowed) if allowed is not None else None)
    store = get_issuer_state().store
    moment = now()
    if query:
        exact = store.licenses.get_by_id_or_key(query)
        found = [exact] if exact is not None else _by_email(query, app_ids) if "@" in query else []
        found = [
            lic
            for lic in found
            if (app_ids is None or lic.app_id in app_ids)
            and (status is None or lic.effective_status(moment) == status)
        ]
        return found, len(found)
    if app_ids is not None and len(app_ids) != 1:
        # several apps of a limited user: one list per app, newest first
        records: list[LicenseRecord] = []
        total = 0
        for one in app_ids:
            part, count = store.licenses.list(
                app_id=one, status=status, page=1, limit=PAGE_SIZE, now=moment
            )
            records.extend(part)
            total += count
        records.sort(key=lambda lic: lic.created_at, reverse=True)
        return records[:PAGE_SIZE], total
    return store.licenses.list(
        app_id=app_ids[0] if app_ids else None,
        status=status,
        page=page,
        limit=PAGE_SIZE,
        now=moment,
    )


def _app_choices() -> list[tuple[str, str]]:
    return [(app.id, app.name) for app in visible_apps()]


def _list_page(create_form: LicenseCreateForm, status: int = 200) -> tuple[str, int]:
    form = LicenseSearchForm(request.args)
    choices = _app_choices()
    form.app.choices = [("", "Every app"), *choices]
    page = request.args.get("page", "1")
    number = int(page) if page.isdigit() and 0 < int(page) <= limits.PAGE else 1
    records: list[LicenseRecord] = []
    total = 0
    if form.validate():
        app_id = form.app.data or None
        if app_id is not None and app_id not in {value for value, _ in choices}:
            abort(404)  # no such app, or not one of the user's
        wanted = form.status.data or None
        with service_call() as outcome:
            records, total = search(
                (form.q.data or "").strip(), app_id=app_id, status=wanted, page=number
            )
        status = max(status, outcome.status)
    else:
        status = 400
    create_form.app_id.choices = choices
    return (
        render_template(
            "console/pages/licenses.html",
            form=form,
            create_form=create_form,
            licenses=records,
            total=total,
            page=number,
            page_size=PAGE_SIZE,
            apps={app.id: app for app in visible_apps()},
            now=now(),
        ),
        status,
    )


@bp.get("/licenses")
@requires_scope("licenses:read")
def licenses() -> Any:
    return _list_page(LicenseCreateForm())


def _fields(form: LicenseFieldsForm) -> dict[str, Any]:
    return {
        "plan": form.plan.data or None,
        "features": split_list(form.features.data),
        "expires_at": parse_when(form.expires_at.data),
    }


@bp.post("/licenses")
@requires_scope("licenses:write")
def create_license() -> Any:
    form = LicenseCreateForm()
    form.app_id.choices = _app_choices()
    if not form.validate():
        return _list_page(form, 400)
    check_app(form.app_id.data)
    raw_metadata = (form.metadata.data or "").strip()
    metadata = json.loads(raw_metadata) if raw_metadata else {}
    with service_call() as outcome:
        lic = license_service.create_license(
            get_issuer_state(),
            console_actor(),
            app_id=form.app_id.data or "",
            issued_to=form.issued_to.data or None,
            issued_email=form.issued_email.data or None,
            max_devices=form.max_devices.data or 1,
            require_hwuid=bool(form.require_hwuid.data),
            metadata=metadata,
            **_fields(form),
        )
    if not outcome.ok:
        return _list_page(form, outcome.status)
    flash(f"License {lic.key} created.", "info")
    return _to(lic.id)


def visible_license(license_id: str) -> LicenseRecord:
    """The license ``license_id`` (its id or key) if the user may see it, else 404."""
    lic = get_issuer_state().store.licenses.get_by_id_or_key(license_id)
    if lic is None or not user_may_access_app(lic.app_id):
        abort(404)
    return lic


def _edit_form(lic: LicenseRecord) -> LicenseFieldsForm:
    form = LicenseFieldsForm(formdata=None)
    form.plan.data = lic.plan
    form.features.data = ", ".join(lic.features)
    form.expires_at.data = lic.expires_at.isoformat() if lic.expires_at else ""
    return form


def _detail(
    lic: LicenseRecord,
    *,
    edit_form: LicenseFieldsForm | None = None,
    extend_form: ExtendForm | None = None,
    status: int = 200,
) -> tuple[str, int]:
    state = get_issuer_state()
    return (
        render_template(
            "console/pages/license.html",
            lic=lic,
            app=state.store.apps.get(lic.app_id),
            effective=lic.effective_status(now()),
            metadata_json=json.dumps(lic.metadata, indent=2, sort_keys=True),
            edit_form=edit_form or _edit_form(lic),
            extend_form=extend_form or ExtendForm(formdata=None),
            revoke_form=ReasonForm(formdata=None),
        ),
        status,
    )


@bp.get("/licenses/<license_id>")
@requires_scope("licenses:read")
def license_detail(license_id: str) -> Any:
    return _detail(visible_license(license_id))


def _to(license_id: str) -> BaseResponse:
    return redirect(url_for("console.license_detail", license_id=license_id), 303)


@bp.post("/licenses/<license_id>")
@requires_scope("licenses:write")
def update_license(license_id: str) -> Any:
    lic = visible_license(license_id)
    form = LicenseFieldsForm()
    if not form.validate():
        return _detail(lic, edit_form=form, status=400)
    wanted = _fields(form)
    changes = {
        key: value
        for key, value in wanted.items()
        if (tuple(value) if key == "features" else value) != getattr(lic, key)
    }
    with service_call() as outcome:
        lic = license_service.update_license(
            get_issuer_state(), console_actor(), lic.id, changes=changes
        )
    if not outcome.ok:
        return _detail(lic, edit_form=form, status=outcome.status)
    flash("License saved." if changes else "Nothing changed.", "info")
    return _to(lic.id)


@bp.post("/licenses/<license_id>/revoke")
@requires_scope("licenses:write")
def revoke_license(license_id: str) -> Any:
    lic = visible_license(license_id)
    form = ReasonForm()
    if not form.validate():
        return _detail(lic, status=400)
    with service_call() as outcome:
        lic = license_service.change_status(
            get_issuer_state(),
            console_actor(),
            lic.id,
            "REVOKED",
            reason=form.reason.data or None,
        )
    if not outcome.ok:
        return _detail(lic, status=outcome.status)
    flash("License revoked: its tokens are refused from now on.", "info")
    return _to(lic.id)


def _status_action(license_id: str, action: str) -> Any:
    status, _ = STATUS_ACTIONS[action]
    lic = visible_license(license_id)
    with service_call() as outcome:
        lic = license_service.change_status(get_issuer_state(), console_actor(), lic.id, status)
    if not outcome.ok:
        return _detail(lic, status=outcome.status)
    flash(f"License {status.lower()}.", "info")
    return _to(lic.id)


@bp.post("/licenses/<license_id>/suspend")
@requires_scope(STATUS_ACTIONS["suspend"][1])
def suspend_license(license_id: str) -> Any:
    return _status_action(license_id, "suspend")


@bp.post("/licenses/<license_id>/activate")
@requires_scope(STATUS_ACTIONS["activate"][1])
def activate_license(license_id: str) -> Any:
    return _status_action(license_id, "activate")


@bp.post("/licenses/<license_id>/extend")
@requires_scope("licenses:write")
def extend_license(license_id: str) -> Any:
    lic = visible_license(license_id)
    form = ExtendForm()
    if not form.validate():
        return _detail(lic, extend_form=form, status=400)
    with service_call() as outcome:
        lic = license_service.extend_license(
            get_issuer_state(),
            console_actor(),
            lic.id,
            expires_at=parse_when(form.expires_at.data),
        )
    if not outcome.ok:
        return _detail(lic, extend_form=form, status=outcome.status)
    flash("Expiry changed.", "info")
    return _to(lic.id)


@bp.post("/licenses/<license_id>/devices/release")
@requires_scope("devices:write")
def release_device(license_id: str) -> Any:
    lic = visible_license(license_id)
    hwuid = request.form.get("hwuid", "")
    if not hwuid or len(hwuid) > limits.HWUID:
        abort(400, description="Name the device to release.")
    with service_call() as outcome:
        lic = license_service.release_device(
            get_issuer_state(), console_actor(), lic.id, hwuid=hwuid
        )
    if not outcome.ok:
        return _detail(lic, status=outcome.status)
    flash("Device released.", "info")
    return _to(lic.id)
