"""The account's security: second factors, backup codes, password and sessions.

Every change here is an audit event. Removing a second factor is refused when it is the
last one: every user keeps one (owners and admins included, as the rule says).
"""

from __future__ import annotations

from typing import Any, Final

from flask import abort, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..services import users
from . import mfa, sessions
from .actors import request_actor
from .auth import (
    current_session,
    current_user,
    login_required,
    mfa_is_recent,
    reauth_redirect,
    requires_recent_mfa,
    signed,
)
from .blueprint import add_nav, bp
from .forms import ActionForm, ChangePasswordForm, TotpConfirmForm
from .passwords import WeakPassword, check_new_password
from .repository import ConsoleUser
from .signin import finish_enrolment
from .state import console_state

add_nav("Account", "console.account")
add_nav("Sessions", "console.sessions_page")


def _enrolling_user() -> ConsoleUser | None:
    """The user of a session in stage ``enrol`` or ``full``."""
    found = signed()
    if found is None or found.session.stage not in (sessions.STAGE_ENROL, sessions.STAGE_FULL):
        return None
    return found.user


@bp.get("/account")
@login_required
def account() -> Any:
    state = console_state()
    user = current_user()
    assert user is not None
    return render_template(
        "console/account.html",
        user=user,
        credentials=state.repo.credentials(user.id),
        backup_left=state.repo.unused_backup_codes(user.id),
        password_form=ChangePasswordForm(),
        action_form=ActionForm(),
    )


@bp.route("/account/totp", methods=["GET", "POST"], endpoint="enrol")
def totp_enrol() -> Any:
    """Enrol TOTP: a pending secret shown as QR code and text, made active by one code."""
    state = console_state()
    user = _enrolling_user()
    if user is None:
        return redirect(url_for("console.login"))
    if user.totp_enabled:
        return redirect(url_for("console.account"))
    enrolling = signed() is not None and signed().session.stage == sessions.STAGE_ENROL  # type: ignore[union-attr]
    if not enrolling and not mfa_is_recent():
        return reauth_redirect()  # a new second factor: ask the current one again
    now = state.clock()
    secret = mfa.open_totp_secret(state, user)
    if secret is None:
        secret = mfa.new_totp_secret()
        user = users.begin_totp(state, user, secret)
    form = TotpConfirmForm()
    if form.validate_on_submit():
        step = mfa.matching_step(secret, form.code.data or "", now)
        enabled = (
            None if step is None else users.enable_totp(state, request_actor(user), user, step)
        )
        if enabled is not None:
            user = enabled
            if enrolling or state.repo.unused_backup_codes(user.id) == 0:
                return finish_enrolment(user, enrolling=enrolling)
            flash("The authenticator app is on.", "info")
            return redirect(url_for("console.account"))
        form.code.errors = ["That code is not right. Check the time on your device and try again."]
        status = 400
    else:
        status = 200
    uri = mfa.provisioning_uri(secret, user.email)
    return (
        render_template(
            "console/totp.html",
            form=form,
            secret=secret,
            qr=mfa.qr_svg_data_uri(uri),
            enrolling=enrolling,
        ),
        status,
    )


@bp.post("/account/totp/disable")
@requires_recent_mfa
def totp_disable() -> BaseResponse:
    state = console_state()
    user = current_user()
    assert user is not None
    if not state.repo.credentials(user.id):
        flash("Register a passkey first: every account keeps a second factor.", "error")
        return redirect(url_for("console.account"))
    users.disable_totp(state, request_actor(user), user)
    flash("The authenticator app is off.", "info")
    return redirect(url_for("console.account"))


@bp.post("/account/backup-codes")
@requires_recent_mfa
def backup_codes() -> Any:
    state = console_state()
    user = current_user()
    assert user is not None
    ActionForm().validate_on_submit()
    codes = users.regenerate_backup_codes(state, request_actor(user), user)
    return render_template("console/backup_codes.html", codes=codes)


@bp.post("/account/password")
@login_required
def change_password() -> Any:
    state = console_state()
    user = current_user()
    session = current_session()
    assert user is not None and session is not None
    form = ChangePasswordForm()
    if form.validate_on_submit():
        if not state.passwords.verify(user.password_hash, form.current.data or ""):
            form.current.errors = ["That is not your current password."]
        else:
            try:
                check_new_password(form.password.data or "", email=user.email)
            except WeakPassword as weak:
                form.password.errors = [str(weak)]
            else:
                actor = request_actor(user)
                password_hash = state.passwords.hash(form.password.data or "")
                with state.store.unit_of_work(actor):
                    new_hash = sessions.issue(
                        state,
                        user,
                        stage=sessions.STAGE_FULL,
                        mfa_at=session.mfa_at,
                        created_at=session.created_at,
                    )
                    users.change_password(
                        state, actor, user, password_hash=password_hash, keep=new_hash
                    )
                flash("Password changed. Your other sessions are signed out.", "info")
                return redirect(url_for("console.account"))
    return (
        render_template(
            "console/account.html",
            user=user,
            credentials=state.repo.credentials(user.id),
            backup_left=state.repo.unused_backup_codes(user.id),
            password_form=form,
            action_form=ActionForm(),
        ),
        400,
    )


_BROWSERS: Final = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS: Final = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str | None) -> str:
    """A short name for a session's device ("Firefox on Windows") from its User-Agent; the
    full string stays available (shown as the cell's title)."""
    if not user_agent:
        return "Unknown device"
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or user_agent[:60]


def session_handle(id_hash: str) -> str:
    """The public name of a session in pages and URLs (not the cookie, not its hash)."""
    return id_hash[:16]


@bp.get("/account/sessions")
@login_required
def sessions_page() -> Any:
    state = console_state()
    user = current_user()
    assert user is not None
    mine = sessions.current_id_hash()
    rows = [
        {
            "handle": session_handle(s.id_hash),
            "device": device_name(s.user_agent),
            "current": s.id_hash == mine,
            "session": s,
            "stale": sessions.end_reason(state, s, user, state.clock()) is not None,
        }
        for s in state.repo.list_sessions(user.id)
    ]
    return render_template(
        "console/sessions.html", rows=[r for r in rows if not r["stale"]], action_form=ActionForm()
    )


@bp.post("/account/sessions/<handle>/revoke")
@login_required
def revoke_session(handle: str) -> BaseResponse:
    state = console_state()
    user = current_user()
    assert user is not None
    ActionForm().validate_on_submit()
    target = next(
        (s for s in state.repo.list_sessions(user.id) if session_handle(s.id_hash) == handle), None
    )
    if target is None:
        abort(404)
    users.revoke_session(state, request_actor(user), user, target.id_hash, handle=handle)
    if target.id_hash == sessions.current_id_hash():
        sessions.revoke_current(state)
        return redirect(url_for("console.login"))
    flash("The session is signed out.", "info")
    return redirect(url_for("console.sessions_page"))


@bp.post("/account/sessions/revoke-all")
@login_required
def revoke_all_sessions() -> BaseResponse:
    state = console_state()
    user = current_user()
    assert user is not None
    ActionForm().validate_on_submit()
    users.revoke_all_sessions(state, request_actor(user), user)
    sessions.revoke_current(state)
    flash("You are signed out everywhere.", "info")
    return redirect(url_for("console.login"))
