"""Signing in and out: password, second factor, first setup from a link, re-checks.

Sign-in is two steps. ``/login`` checks the password and starts a session of stage
``mfa`` (or ``enrol`` for a user who has no second factor yet); ``/login/verify`` checks a
TOTP or backup code (or the passkey ceremony of ``webauthn_views``) and issues a new
session id of stage ``full``. Every failure, whatever failed (unknown email, wrong
password, disabled or locked account, backoff due, wrong code), gives the same message
after one Argon2 check, and is counted by ``throttle``.
"""

from __future__ import annotations

from typing import Any, Final

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..client_ip import client_ip
from . import mfa, sessions, throttle
from .audit import audit_event
from .auth import current_session, current_user, login_required, safe_next, signed
from .blueprint import bp
from .forms import LoginForm, SecondFactorForm, SetupForm
from .passwords import WeakPassword, check_new_password
from .people import setup_token_hash
from .repository import ConsoleUser
from .state import ConsoleState, console_state

FAILED: Final = (
    "Sign-in failed: the email, password or code is wrong, or the account cannot sign in now."
)


def _form_status() -> int:
    """200 for a form shown, 400 for one posted with invalid fields (shown again)."""
    return 400 if request.method == "POST" else 200


def actor_of(user: ConsoleUser) -> str:
    return f"user:{user.id}"


def _home() -> str:
    return url_for("console.index")


def complete_sign_in(
    state: ConsoleState, user: ConsoleUser, method: str, next_url: str | None
) -> BaseResponse:
    """The second factor passed: a new session id of stage ``full``; audited."""
    now = state.clock()
    found = signed()
    created = found.session.created_at if found is not None else None
    sessions.issue(state, user, stage=sessions.STAGE_FULL, mfa_at=now, created_at=created)
    throttle.record_success(state, user.email)
    audit_event(
        state.store,
        "console.login",
        actor=actor_of(user),
        target=actor_of(user),
        method=method,
        ip=client_ip(),
    )
    return redirect(safe_next(next_url) or _home())


@bp.get("/")
@login_required
def index() -> BaseResponse:
    """The console's home: the overview page once it exists, else the account page."""
    has_overview = "console.overview" in current_app.view_functions
    return redirect(url_for("console.overview" if has_overview else "console.account"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    state = console_state()
    if current_user() is not None:
        return redirect(_home())
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next"))
    if form.validate_on_submit():
        email = throttle.normalize_email(form.email.data or "")
        ip = client_ip()
        now = state.clock()
        user = state.repo.find_user_by_email(email)
        may_try = throttle.allowed(state, email, ip, now)
        usable = user is not None and not user.disabled and not throttle.is_locked(user, now)
        if may_try and usable and user is not None:
            ok = state.passwords.verify(user.password_hash, form.password.data or "")
        else:
            state.passwords.burn()
            ok = False
        if ok and user is not None:
            if user.password_hash and state.passwords.needs_rehash(user.password_hash):
                state.repo.update_user(
                    user.id, now=now, password_hash=state.passwords.hash(form.password.data or "")
                )
            stage = (
                sessions.STAGE_MFA if mfa.has_second_factor(state, user) else sessions.STAGE_ENROL
            )
            sessions.issue(state, user, stage=stage, mfa_at=None)
            if stage == sessions.STAGE_ENROL:
                return redirect(url_for("console.enrol"))
            return redirect(url_for("console.login_mfa", next=safe_next(form.next.data)))
        if may_try:
            throttle.record_failure(state, email, ip, user, now, step="password")
        flash(FAILED, "error")
        return render_template("console/login.html", form=form), 401
    return render_template("console/login.html", form=form), _form_status()


@bp.route("/login/verify", methods=["GET", "POST"])
def login_mfa() -> Any:
    state = console_state()
    found = signed()
    if found is None:
        return redirect(url_for("console.login"))
    if found.session.stage == sessions.STAGE_FULL:
        return redirect(_home())
    if found.session.stage == sessions.STAGE_ENROL:
        return redirect(url_for("console.enrol"))
    user = found.user
    form = SecondFactorForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next"))
    if form.validate_on_submit():
        now = state.clock()
        ip = client_ip()
        method = _check_second_factor(state, user, form.code.data or "", ip)
        if method is not None:
            return complete_sign_in(state, user, method, form.next.data)
        flash(FAILED, "error")
        form.code.data = ""  # a code, even a spent one, is not shown again
        if throttle.is_locked(state.repo.get_user(user.id) or user, now):
            sessions.revoke_current(state, now)
            return redirect(url_for("console.login"))
        return render_template(
            "console/login_mfa.html", form=form, user=user, has_passkeys=_has_passkeys(user)
        ), 401
    return render_template(
        "console/login_mfa.html", form=form, user=user, has_passkeys=_has_passkeys(user)
    ), _form_status()


def _has_passkeys(user: ConsoleUser) -> bool:
    return bool(console_state().repo.credentials(user.id))


def _check_second_factor(state: ConsoleState, user: ConsoleUser, code: str, ip: str) -> str | None:
    """``totp`` or ``backup_code`` when ``code`` passes (backoff and lock included), else
    None (the failure counted)."""
    now = state.clock()
    fresh = state.repo.get_user(user.id)
    if fresh is None or fresh.disabled or throttle.is_locked(fresh, now):
        return None
    if not throttle.allowed(state, fresh.email, ip, now):
        return None
    if mfa.check_totp(state, fresh, code, now):
        return "totp"
    if mfa.use_backup_code(state, fresh, code, now):
        audit_event(
            state.store,
            "console.backup_code_used",
            actor=actor_of(fresh),
            target=actor_of(fresh),
            left=state.repo.unused_backup_codes(fresh.id),
        )
        return "backup_code"
    throttle.record_failure(state, fresh.email, ip, fresh, now, step="second_factor")
    return None


@bp.post("/logout")
def logout() -> BaseResponse:
    state = console_state()
    found = signed()
    if sessions.revoke_current(state) and found is not None:
        audit_event(
            state.store, "console.logout", actor=actor_of(found.user), target=actor_of(found.user)
        )
    flash("You are signed out.", "info")
    return redirect(url_for("console.login"))


@bp.route("/setup/<token>", methods=["GET", "POST"])
def setup(token: str) -> Any:
    """First setup from the link the CLI printed: display name and password, then a second
    factor (``enrol``)."""
    state = console_state()
    now = state.clock()
    token_hash = setup_token_hash(token[:200])
    user_id = state.repo.setup_token_user(token_hash, now)
    user = None if user_id is None else state.repo.get_user(user_id)
    if user is None or user.disabled:
        return render_template("console/setup_invalid.html"), 404
    form = SetupForm()
    if request.method == "GET":
        form.display_name.data = user.display_name
    if form.validate_on_submit():
        password = form.password.data or ""
        try:
            check_new_password(password, email=user.email)
        except WeakPassword as weak:
            form.password.errors = [str(weak)]
            return render_template("console/setup.html", form=form, user=user), 400
        if state.repo.use_setup_token(token_hash, now) != user.id:
            return render_template("console/setup_invalid.html"), 404
        user = state.repo.update_user(
            user.id,
            now=now,
            display_name=(form.display_name.data or "").strip() or user.display_name,
            password_hash=state.passwords.hash(password),
        )
        audit_event(
            state.store,
            "console.password_set",
            actor=actor_of(user),
            target=actor_of(user),
            via="setup_link",
        )
        stage = sessions.STAGE_MFA if mfa.has_second_factor(state, user) else sessions.STAGE_ENROL
        sessions.issue(state, user, stage=stage, mfa_at=None)
        return redirect(
            url_for("console.enrol" if stage == sessions.STAGE_ENROL else "console.login_mfa")
        )
    return render_template("console/setup.html", form=form, user=user), _form_status()


@bp.route("/reauth", methods=["GET", "POST"])
@login_required
def reauth() -> Any:
    """Check the second factor again before a sensitive action (``@requires_recent_mfa``)."""
    state = console_state()
    user = current_user()
    assert user is not None
    form = SecondFactorForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next"))
    if form.validate_on_submit():
        method = _check_second_factor(state, user, form.code.data or "", client_ip())
        if method is not None:
            session = current_session()
            assert session is not None
            now = state.clock()
            sessions.issue(
                state, user, stage=sessions.STAGE_FULL, mfa_at=now, created_at=session.created_at
            )
            audit_event(
                state.store,
                "console.reauth",
                actor=actor_of(user),
                target=actor_of(user),
                method=method,
            )
            return redirect(safe_next(form.next.data) or _home())
        flash(FAILED, "error")
        form.code.data = ""  # a code, even a spent one, is not shown again
        return render_template(
            "console/reauth.html", form=form, has_passkeys=_has_passkeys(user)
        ), 401
    return render_template(
        "console/reauth.html", form=form, has_passkeys=_has_passkeys(user)
    ), _form_status()


def finish_enrolment(user: ConsoleUser, *, enrolling: bool) -> Any:
    """After the first second factor: backup codes (shown once) and, when enrolling, a
    full session with a new id."""
    state = console_state()
    codes = mfa.regenerate_backup_codes(state, user)
    audit_event(
        state.store, "console.backup_codes_generated", actor=actor_of(user), target=actor_of(user)
    )
    if enrolling:
        found = signed()
        created = found.session.created_at if found is not None else None
        sessions.issue(
            state, user, stage=sessions.STAGE_FULL, mfa_at=state.clock(), created_at=created
        )
        audit_event(
            state.store,
            "console.login",
            actor=actor_of(user),
            target=actor_of(user),
            method="enrolment",
        )
    return render_template("console/backup_codes.html", codes=codes)
