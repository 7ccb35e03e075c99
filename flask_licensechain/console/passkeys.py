"""Passkeys and security keys (W3C Web Authentication Level 2, with py_webauthn).

A user registers several credentials, names them and removes them (never the last second
factor). A credential signs in as the second factor after the password, or alone
("Sign in with a passkey"): then the authenticator must verify the user (PIN or
biometrics), so that possession and knowledge are both there (WebAuthn 7.2 step 17).

Ceremonies are two JSON calls each (``static/console/webauthn.js`` makes them, sending the
CSRF token in ``X-CSRFToken``): options, then the browser's answer to verify. The challenge
lives in Flask's signed session for ``CHALLENGE_TTL`` and is used once. The relying party
is the console's host (``LICENSECHAIN_CONSOLE_URL`` when set, else the request's), the
expected origin that URL's origin. Failures count like wrong passwords (``throttle``).
"""

from __future__ import annotations

import time
from typing import Any, Final
from urllib.parse import urlsplit

from flask import abort, flash, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from werkzeug.wrappers import Response as BaseResponse

from ..client_ip import client_ip
from . import mfa, sessions, throttle
from .audit import audit_event
from .auth import current_session, current_user, login_required, safe_next, signed
from .blueprint import bp
from .forms import ActionForm, NameForm
from .repository import ConsoleUser, WebAuthnCredential
from .signin import FAILED, actor_of, complete_sign_in, finish_enrolment
from .state import ConsoleState, console_state

CHALLENGE_TTL: Final = 300  # seconds
RP_NAME: Final = "LicenseChain console"
_SESSION_KEY: Final = "lc_console_webauthn"
_MAX_BODY: Final = 64 * 1024


def relying_party(state: ConsoleState) -> tuple[str, str]:
    """The RP id (a host name) and the expected origin."""
    base = state.settings.console_url
    if base:
        parts = urlsplit(base)
        return parts.hostname or "localhost", f"{parts.scheme}://{parts.netloc}"
    return request.host.split(":")[0].strip("[]"), request.host_url.rstrip("/")


def _remember(purpose: str, challenge: bytes, **extra: Any) -> None:
    session[_SESSION_KEY] = {
        "purpose": purpose,
        "challenge": bytes_to_base64url(challenge),
        "expires": time.time() + CHALLENGE_TTL,
        **extra,
    }


def _take(purpose: str) -> dict[str, Any] | None:
    """The pending ceremony of ``purpose`` (removed: a challenge is used once), or None."""
    pending = session.pop(_SESSION_KEY, None)
    if not isinstance(pending, dict) or pending.get("purpose") != purpose:
        return None
    if float(pending.get("expires", 0)) < time.time():
        return None
    return pending


def _body() -> dict[str, Any]:
    if (request.content_length or 0) > _MAX_BODY:
        abort(413)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400)
    return data


def _credential_json(body: dict[str, Any]) -> dict[str, Any]:
    credential = body.get("credential")
    if not isinstance(credential, dict) or not isinstance(credential.get("response"), dict):
        abort(400)
    return credential


def _json_error(status: int, message: str) -> ResponseReturnValue:
    return jsonify({"error": "webauthn_failed", "message": message}), status


def _enrolling_or_full() -> ConsoleUser | None:
    found = signed()
    if found is None or found.session.stage not in (sessions.STAGE_ENROL, sessions.STAGE_FULL):
        return None
    return found.user


def _user_handle(user: ConsoleUser) -> bytes:
    return user.id.encode()


# -- registration ------------------------------------------------------------------------


@bp.post("/webauthn/register/options")
def passkey_register_options() -> ResponseReturnValue:
    state = console_state()
    user = _enrolling_or_full()
    if user is None:
        abort(401)
    rp_id, _ = relying_party(state)
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_id=_user_handle(user),
        user_name=user.email,
        user_display_name=user.display_name,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.id))
            for c in state.repo.credentials(user.id)
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    _remember("register", options.challenge, user=user.id)
    return BaseResponse(options_to_json(options), mimetype="application/json")


@bp.post("/webauthn/register/verify")
def passkey_register_verify() -> ResponseReturnValue:
    state = console_state()
    user = _enrolling_or_full()
    if user is None:
        abort(401)
    body = _body()
    pending = _take("register")
    if pending is None or pending.get("user") != user.id:
        return _json_error(400, "The registration expired. Try again.")
    rp_id, origin = relying_party(state)
    try:
        verified = verify_registration_response(
            credential=_credential_json(body),
            expected_challenge=base64url_to_bytes(pending["challenge"]),
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError):
        return _json_error(400, "The authenticator's answer did not verify.")
    name = str(body.get("name") or "").strip()[:100] or "Passkey"
    now = state.clock()
    credential = WebAuthnCredential(
        id=bytes_to_base64url(verified.credential_id),
        user_id=user.id,
        name=name,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=tuple(str(t) for t in (body.get("transports") or ()) if isinstance(t, str))[:8],
        created_at=now,
        last_used_at=None,
    )
    if state.repo.get_credential(credential.id) is not None:
        return _json_error(409, "This authenticator is registered already.")
    state.repo.add_credential(credential)
    audit_event(
        state.store,
        "console.mfa_passkey_added",
        actor=actor_of(user),
        target=actor_of(user),
        name=name,
        credential=credential.id[:16],
    )
    found = signed()
    if found is not None and found.session.stage == sessions.STAGE_ENROL:
        return jsonify({"ok": True, "finish": url_for("console.enrol_finish")})
    flash(f"Passkey “{name}” added.", "info")
    return jsonify({"ok": True, "redirect": url_for("console.account")})


@bp.post("/account/enrol/finish")
def enrol_finish() -> Any:
    """After a passkey was registered during enrolment: backup codes and a full session."""
    found = signed()
    if found is None or found.session.stage != sessions.STAGE_ENROL:
        return redirect(url_for("console.login"))
    state = console_state()
    if not mfa.has_second_factor(state, found.user):
        return redirect(url_for("console.enrol"))
    return finish_enrolment(found.user, enrolling=True)


# -- authentication ----------------------------------------------------------------------

#: what a passkey proves in each mode: after the password (``mfa``), again for a sensitive
#: action (``reauth``), or alone (``passwordless``, user verification required)
_MODES: Final = ("mfa", "reauth", "passwordless")


def _mode_user(mode: str) -> ConsoleUser | None:
    """The user a ceremony of ``mode`` is for (None: anyone, for ``passwordless``)."""
    found = signed()
    if mode == "mfa":
        if found is None or found.session.stage != sessions.STAGE_MFA:
            abort(401)
        return found.user
    if mode == "reauth":
        user = current_user()
        if user is None:
            abort(401)
        return user
    return None


@bp.post("/webauthn/login/options")
def passkey_login_options() -> ResponseReturnValue:
    state = console_state()
    mode = str(_body().get("mode", ""))
    if mode not in _MODES:
        abort(400)
    user = _mode_user(mode)
    rp_id, _ = relying_party(state)
    allowed = (
        [
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.id))
            for c in state.repo.credentials(user.id)
        ]
        if user is not None
        else []
    )
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=allowed,
        user_verification=UserVerificationRequirement.REQUIRED
        if mode == "passwordless"
        else UserVerificationRequirement.PREFERRED,
    )
    _remember(mode, options.challenge, user=None if user is None else user.id)
    return BaseResponse(options_to_json(options), mimetype="application/json")


@bp.post("/webauthn/login/verify")
def passkey_login_verify() -> ResponseReturnValue:
    state = console_state()
    body = _body()
    mode = str(body.get("mode", ""))
    if mode not in _MODES:
        abort(400)
    expected_user = _mode_user(mode)
    pending = _take(mode)
    now = state.clock()
    ip = client_ip()
    credential_json = _credential_json(body)
    raw_id = credential_json.get("rawId")
    stored = state.repo.get_credential(raw_id) if isinstance(raw_id, str) else None
    owner = None if stored is None else state.repo.get_user(stored.user_id)
    claimed = expected_user or owner
    refused = (
        pending is None
        or pending.get("user") != (None if expected_user is None else expected_user.id)
        or stored is None
        or owner is None
        or owner.disabled
        or throttle.is_locked(owner, now)
        or (expected_user is not None and owner.id != expected_user.id)
        or not throttle.allowed(state, owner.email, ip, now)
    )
    if owner is None and not throttle.allowed(state, "", ip, now):
        refused = True
    verified = None
    if not refused and stored is not None and pending is not None:
        rp_id, origin = relying_party(state)
        try:
            verified = verify_authentication_response(
                credential=credential_json,
                expected_challenge=base64url_to_bytes(pending["challenge"]),
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=stored.public_key,
                credential_current_sign_count=stored.sign_count,
                require_user_verification=mode == "passwordless",
            )
        except (WebAuthnException, ValueError, TypeError, KeyError):
            verified = None
        if verified is not None and mode == "passwordless" and owner is not None:
            handle = credential_json.get("response", {}).get("userHandle")
            if not handle or base64url_to_bytes(handle) != _user_handle(owner):
                verified = None
    if verified is None or stored is None or owner is None:
        # An unknown credential still counts against the IP (an empty email).
        email = "" if claimed is None else claimed.email
        throttle.record_failure(state, email, ip, claimed, now, step="passkey")
        return _json_error(401, FAILED)
    state.repo.use_credential(stored.id, verified.new_sign_count, now)
    if mode == "reauth":
        session_now = current_session()
        assert session_now is not None
        sessions.issue(
            state, owner, stage=sessions.STAGE_FULL, mfa_at=now, created_at=session_now.created_at
        )
        audit_event(
            state.store,
            "console.reauth",
            actor=actor_of(owner),
            target=actor_of(owner),
            method="passkey",
        )
        return jsonify(
            {"ok": True, "redirect": safe_next(body.get("next")) or url_for("console.index")}
        )
    response = complete_sign_in(
        state, owner, "passkey" if mode == "mfa" else "passkey_passwordless", body.get("next")
    )
    return jsonify({"ok": True, "redirect": response.headers["Location"]})


# -- managing them -----------------------------------------------------------------------


def _own_credential(user: ConsoleUser, credential_id: str) -> WebAuthnCredential:
    found = console_state().repo.get_credential(credential_id)
    if found is None or found.user_id != user.id:
        abort(404)
    return found


@bp.post("/account/passkeys/<credential_id>/rename")
@login_required
def passkey_rename(credential_id: str) -> BaseResponse:
    state = console_state()
    user = current_user()
    assert user is not None
    credential = _own_credential(user, credential_id)
    form = NameForm()
    if not form.validate_on_submit():
        flash("Give the passkey a name of at most 100 characters.", "error")
        return redirect(url_for("console.account"))
    name = (form.name.data or "").strip()
    state.repo.rename_credential(user.id, credential.id, name)
    audit_event(
        state.store,
        "console.mfa_passkey_renamed",
        actor=actor_of(user),
        target=actor_of(user),
        name=name,
        credential=credential.id[:16],
    )
    flash("Passkey renamed.", "info")
    return redirect(url_for("console.account"))


@bp.post("/account/passkeys/<credential_id>/remove")
@login_required
def passkey_remove(credential_id: str) -> BaseResponse:
    state = console_state()
    user = current_user()
    assert user is not None
    credential = _own_credential(user, credential_id)
    ActionForm().validate_on_submit()
    others = [c for c in state.repo.credentials(user.id) if c.id != credential.id]
    if not others and not user.totp_enabled:
        flash("This is your last second factor: add another one before removing it.", "error")
        return redirect(url_for("console.account"))
    state.repo.remove_credential(user.id, credential.id)
    audit_event(
        state.store,
        "console.mfa_passkey_removed",
        actor=actor_of(user),
        target=actor_of(user),
        name=credential.name,
        credential=credential.id[:16],
    )
    flash(f"Passkey “{credential.name}” removed.", "info")
    return redirect(url_for("console.account"))
