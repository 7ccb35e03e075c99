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
from ..services import users
from . import mfa, sessions, throttle
from .actors import request_actor
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


def _home() -> str:
    return url_for("console.index")


def complete_sign_in(
    state: ConsoleState, user: ConsoleUser, method: str, next_url: str | None
) -> BaseResponse:
    """The second factor passed: a new session id of stage ``full``; audited."""
    now = state.clock()
    found = signed()
    created = found.session.created_at if found is not None else None
    actor = request_actor(user)
    with state.store.unit_of_work(actor):
        sessions.issue(state, user, stage=sessions.STAGE_FULL, mfa_at=now, created_at=created)
        users.signed_in(state, actor, user, method=method)
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
        attempt = throttle.begin_attempt(state, email, ip, now)
        usable = user is not None and not user.disabled and not throttle.is_locked(user, now)
        if attempt is not None and usable and user is not None:
            ok = state.passwords.verify(user.password_hash, form.password.data or "")
        else:
            state.passwords.burn()
            ok = False
        if ok and user is not None and attempt is not None:
            throttle.forget_attempt(state, attempt)
            if user.password_hash and state.passwords.needs_rehash(user.password_hash):
                rehashed = state.passwords.hash(form.password.data or "")
                users.rehash_password(state, user, rehashed)
            stage = (
                sessions.STAGE_MFA if mfa.has_second_factor(state, user) else sessions.STAGE_ENROL
            )
            sessions.issue(state, user, stage=stage, mfa_at=None)
            if stage == sessions.STAGE_ENROL:
                return redirect(url_for("console.enrol"))
            return redirect(url_for("console.login_mfa", next=safe_next(form.next.data)))
        if attempt is not None:
            users.login_failed(
                state,
                request_actor(None),
                email=email,
                ip=ip,
                user=user,
                now=now,
                step="password",
                attempt=attempt,
            )
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
    attempt = throttle.begin_attempt(state, fresh.email, ip, now)
    if attempt is None:
        return None
    if mfa.check_totp(state, fresh, code, now):
        throttle.forget_attempt(state, attempt)
        return "totp"
    if users.use_backup_code(state, request_actor(fresh), fresh, code, now):
        throttle.forget_attempt(state, attempt)
        return "backup_code"
    users.login_failed(
        state,
        request_actor(None),
        email=fresh.email,
        ip=ip,
        user=fresh,
        now=now,
        step="second_factor",
        attempt=attempt,
    )
    return None


@bp.post("/logout")
def logout() -> BaseResponse:
    state = console_state()
    found = signed()
    if found is not None:
        users.logout(state, request_actor(found.user), found.user, found.session.id_hash)
    sessions.revoke_current(state)
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
        updated = users.set_password(
            state,
            request_actor(user),
            user,
            password_hash=state.passwords.hash(password),
            display_name=(form.display_name.data or "").strip() or None,
            setup_token_hash=token_hash,
        )
        if updated is None:
            return render_template("console/setup_invalid.html"), 404
        user = updated
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
            actor = request_actor(user)
            with state.store.unit_of_work(actor):
                sessions.issue(
                    state,
                    user,
                    stage=sessions.STAGE_FULL,
                    mfa_at=now,
                    created_at=session.created_at,
                )
                users.record_event(state, actor, "console.reauth", user, method=method)
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
    actor = request_actor(user)
    with state.store.unit_of_work(actor):
        codes = users.regenerate_backup_codes(state, actor, user)
        if enrolling:
            found = signed()
            created = found.session.created_at if found is not None else None
            sessions.issue(
                state, user, stage=sessions.STAGE_FULL, mfa_at=state.clock(), created_at=created
            )
            users.signed_in(state, actor, user, method="enrolment")
    return render_template("console/backup_codes.html", codes=codes)
