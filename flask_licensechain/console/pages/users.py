"""Users (owners only): invite a person (a one-time setup link, shown once), change a role,
disable or enable, issue a new setup link.

Each change goes through ``services/users.py``, the same functions as ``flask licensechain
users ...``; each commits with its audit event, and a role change or a disabling ends the person's
sessions. Changing a role asks for a recent second factor. Nobody changes their own role
or disables themselves here: the last owner cannot lock everyone out.
"""

from __future__ import annotations

from typing import Any, Final

from flask import abort, flash, redirect, render_template, url_for

from ...core.errors import Conflict
from ...services import users as user_service
from .. import people
from ..auth import requires_recent_mfa, requires_scope
from ..blueprint import bp
from ..repository import ConsoleUser
from ..state import console_state
from .common import console_actor, service_call, signed_in_user
from .forms import InviteForm, RoleForm, split_list

#: the scope of this page: only the owner role holds it
USERS_SCOPE: Final = "users:manage"

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Users", "console.users", USERS_SCOPE)


def _page(form: InviteForm, *, link: str | None = None, status: int = 200) -> tuple[str, int]:
    return (
        render_template(
            "console/pages/users.html",
            users=console_state().repo.list_users(),
            form=form,
            role_form=RoleForm(formdata=None),
            link=link,
            me=signed_in_user(),
        ),
        status,
    )


@bp.get("/users")
@requires_scope(USERS_SCOPE)
def users() -> Any:
    return _page(InviteForm(formdata=None))


@bp.post("/users")
@requires_scope(USERS_SCOPE)
def invite_user() -> Any:
    form = InviteForm()
    if not form.validate():
        return _page(form, status=400)
    state = console_state()
    with service_call() as outcome:
        _, token = user_service.create_user(
            state,
            console_actor(),
            email=form.email.data or "",
            role=form.role.data or "",
            display_name=form.display_name.data or None,
            app_ids=split_list(form.app_ids.data),
        )
    if not outcome.ok:
        return _page(form, status=outcome.status)
    # The link is shown once, in this answer (no-store), never stored in clear.
    return _page(InviteForm(formdata=None), link=people.setup_link(state, token), status=201)


def _other_user(user_id: str) -> ConsoleUser:
    user = console_state().repo.get_user(user_id)
    if user is None:
        abort(404)
    if user.id == signed_in_user().id:
        raise Conflict("Ask another owner to change your own account.")
    return user


@bp.post("/users/<user_id>/role")
@requires_scope(USERS_SCOPE)
@requires_recent_mfa
def change_role(user_id: str) -> Any:
    form = RoleForm()
    if not form.validate():
        return _page(InviteForm(formdata=None), status=400)
    with service_call() as outcome:
        user = _other_user(user_id)
        user_service.set_role(console_state(), console_actor(), user, form.role.data or "")
    if not outcome.ok:
        return _page(InviteForm(formdata=None), status=outcome.status)
    flash("Role changed; that person signs in again.", "info")
    return redirect(url_for("console.users"), 303)


def _set_disabled(user_id: str, disabled: bool) -> Any:
    with service_call() as outcome:
        user = _other_user(user_id)
        user_service.set_disabled(console_state(), console_actor(), user, disabled)
    if not outcome.ok:
        return _page(InviteForm(formdata=None), status=outcome.status)
    flash("User disabled." if disabled else "User enabled.", "info")
    return redirect(url_for("console.users"), 303)


@bp.post("/users/<user_id>/disable")
@requires_scope(USERS_SCOPE)
def disable_user(user_id: str) -> Any:
    return _set_disabled(user_id, True)


@bp.post("/users/<user_id>/enable")
@requires_scope(USERS_SCOPE)
def enable_user(user_id: str) -> Any:
    return _set_disabled(user_id, False)


@bp.post("/users/<user_id>/setup-link")
@requires_scope(USERS_SCOPE)
def new_setup_link(user_id: str) -> Any:
    state = console_state()
    user = state.repo.get_user(user_id)
    if user is None:
        abort(404)
    token = user_service.issue_setup_link(state, console_actor(), user)
    return _page(InviteForm(formdata=None), link=people.setup_link(state, token))
