"""Passkeys and security keys (W3C Web Authentication Level 2, with py_webauthn).

A user registers several credentials, names them and removes them (never the last second
factor). A credential signs in as the second factor after the password, or alone
("Sign in with a passkey"): then the authenticator must verify the user (PIN or
biometrics), so that possession and knowledge are both there (WebAuthn 7.2 step 17).

Ceremonies are two JSON calls each (``static/console/webauthn.js`` makes them, sending the
CSRF token in ``X-CSRFToken``): options, then the browser's answer to verify. The challenge
is kept on the server (``lc_console_webauthn_challenges``, by its SHA-256) for
``CHALLENGE_TTL``, bound to the browser that asked (a random id in Flask's signed session,
kept as its SHA-256) and deleted when an answer signed over it arrives: used once, even by
whoever captured the session cookie with a signed answer (a signature counter that stays 0,
as synced passkeys report it, would not stop that replay). The relying party
is the console's host (``LICENSECHAIN_CONSOLE_URL`` when set, else the request's), the
expected origin that URL's origin. Failures count like wrong passwords (``throttle``).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
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
from ..core.errors import Conflict
from ..services import users
from . import mfa, sessions, throttle
from .actors import request_actor
from .auth import (
    current_session,
    current_user,
    login_required,
    mfa_is_recent,
    requires_recent_mfa,
    safe_next,
    signed,
)
from .blueprint import bp
from .forms import ActionForm, NameForm
from .repository import ConsoleUser, WebAuthnCredential
from .signin import FAILED, complete_sign_in, finish_enrolment
from .state import ConsoleState, console_state

CHALLENGE_TTL: Final = 300  # seconds
RP_NAME: Final = "LicenseChain console"
#: Flask session key of the browser's random ceremony id (the challenges are in the store)
_SESSION_KEY: Final = "lc_console_webauthn_id"
_MAX_BODY: Final = 64 * 1024


def relying_party(state: ConsoleState) -> tuple[str, str]:
    """The RP id (a host name) and the expected origin."""
    base = state.settings.console_url
    if base:
        parts = urlsplit(base)
        return parts.hostname or "localhost", f"{parts.scheme}://{parts.netloc}"
    return request.host.split(":")[0].strip("[]"), request.host_url.rstrip("/")


@dataclass(frozen=True)
class _Pending:
    """A challenge taken for use: its bytes and the user it was issued for."""

    challenge: bytes
    user_id: str | None


def _binding(*, create: bool) -> str | None:
    """The SHA-256 (hex) of this browser's random ceremony id, kept in Flask's signed
    session (made when ``create``; None when there is none)."""
    raw = session.get(_SESSION_KEY)
    if not isinstance(raw, str) or len(raw) > 100:
        if not create:
            return None
        raw = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = raw
    return hashlib.sha256(raw.encode()).hexdigest()


def _remember(state: ConsoleState, purpose: str, challenge: bytes, user_id: str | None) -> None:
    """Keep ``challenge`` on the server for this browser, for ``CHALLENGE_TTL`` seconds."""
    binding = _binding(create=True)
    assert binding is not None
    now = state.clock()
    state.repo.add_challenge(
        hashlib.sha256(challenge).hexdigest(),
        purpose=purpose,
        user_id=user_id,
        binding_hash=binding,
        expires_at=now + timedelta(seconds=CHALLENGE_TTL),
        now=now,
    )


def _signed_challenge(credential: dict[str, Any]) -> bytes | None:
    """The challenge the answer's ``clientDataJSON`` claims (py_webauthn then checks it
    against the one taken), or None when there is no readable one."""
    client_data = credential["response"].get("clientDataJSON")
    if not isinstance(client_data, str) or len(client_data) > _MAX_BODY:
        return None
    decoded = _decoded(client_data)
    try:
        challenge = None if decoded is None else json.loads(decoded).get("challenge")
    except (ValueError, AttributeError, RecursionError):
        return None
    return _decoded(challenge) if isinstance(challenge, str) and len(challenge) <= 200 else None


def _take(state: ConsoleState, purpose: str, credential: dict[str, Any]) -> _Pending | None:
    """The pending ceremony of ``purpose`` that ``credential`` answers, deleted (a challenge
    is used once), or None: never issued, issued to another browser, expired, used already,
    or of another purpose."""
    binding = _binding(create=False)
    challenge = _signed_challenge(credential)
    if binding is None or not challenge:
        return None
    taken = state.repo.take_challenge(
        hashlib.sha256(challenge).hexdigest(), binding_hash=binding, now=state.clock()
    )
    if taken is None or taken.purpose != purpose:
        return None
    return _Pending(challenge, taken.user_id)


def _body() -> dict[str, Any]:
    if (request.content_length or 0) > _MAX_BODY:
        abort(413)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400)
    return data


def _text(body: dict[str, Any], key: str, max_length: int) -> str | None:
    """The string member ``key`` (None when absent or null); 400 for another type or a
    longer string."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        abort(400)
    return value


def _texts(body: dict[str, Any], key: str, max_items: int) -> tuple[str, ...]:
    """The list-of-strings member ``key`` (empty when absent or null); 400 otherwise."""
    value = body.get(key)
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > max_items
        or not all(isinstance(v, str) and len(v) <= 32 for v in value)
    ):
        abort(400)
    return tuple(value)


def _credential_json(body: dict[str, Any]) -> dict[str, Any]:
    credential = body.get("credential")
    if not isinstance(credential, dict) or not isinstance(credential.get("response"), dict):
        abort(400)
    return credential


def _json_error(status: int, message: str) -> ResponseReturnValue:
    return jsonify({"error": "webauthn_failed", "message": message}), status


def _enrolling_or_full() -> ConsoleUser | None:
    """The user who may register a passkey: enrolling a first second factor, or fully
    signed in with a recent second-factor check (``None``: 401; an old check: a JSON 403
    ``reauth_required`` whose ``redirect`` is the re-check page)."""
    found = signed()
    if found is None or found.session.stage not in (sessions.STAGE_ENROL, sessions.STAGE_FULL):
        return None
    if found.session.stage == sessions.STAGE_FULL and not mfa_is_recent():
        back = url_for("console.account", _anchor="passkeys")
        answer = jsonify(
            {
                "error": "reauth_required",
                "message": "Confirm it is you first.",
                "redirect": url_for("console.reauth", next=back.split("#")[0]),
            }
        )
        answer.status_code = 403
        abort(answer)
    return found.user


def _decoded(text: str) -> bytes | None:
    """``text`` decoded from base64url, or None when it is not base64url."""
    try:
        return base64url_to_bytes(text)
    except (ValueError, binascii.Error):
        return None


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
    _remember(state, "register", options.challenge, user.id)
    return BaseResponse(options_to_json(options), mimetype="application/json")


@bp.post("/webauthn/register/verify")
def passkey_register_verify() -> ResponseReturnValue:
    state = console_state()
    user = _enrolling_or_full()
    if user is None:
        abort(401)
    body = _body()
    name = (_text(body, "name", 1000) or "").strip()[:100] or "Passkey"
    transports = _texts(body, "transports", 8)
    credential_json = _credential_json(body)
    pending = _take(state, "register", credential_json)
    if pending is None or pending.user_id != user.id:
        return _json_error(400, "The registration expired. Try again.")
    rp_id, origin = relying_party(state)
    try:
        verified = verify_registration_response(
            credential=credential_json,
            expected_challenge=pending.challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError):
        return _json_error(400, "The authenticator's answer did not verify.")
    now = state.clock()
    credential = WebAuthnCredential(
        id=bytes_to_base64url(verified.credential_id),
        user_id=user.id,
        name=name,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=transports,
        created_at=now,
        last_used_at=None,
    )
    try:
        users.add_passkey(state, request_actor(user), credential)
    except Conflict:
        return _json_error(409, "This authenticator is registered already.")
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
    mode = _text(_body(), "mode", 20)
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
    _remember(state, mode, options.challenge, None if user is None else user.id)
    return BaseResponse(options_to_json(options), mimetype="application/json")


@bp.post("/webauthn/login/verify")
def passkey_login_verify() -> ResponseReturnValue:
    state = console_state()
    body = _body()
    mode = _text(body, "mode", 20)
    next_url = _text(body, "next", 2000)
    if mode not in _MODES:
        abort(400)
    expected_user = _mode_user(mode)
    credential_json = _credential_json(body)
    pending = _take(state, mode, credential_json)
    now = state.clock()
    ip = client_ip()
    raw_id = credential_json.get("rawId")
    stored = state.repo.get_credential(raw_id) if isinstance(raw_id, str) else None
    owner = None if stored is None else state.repo.get_user(stored.user_id)
    claimed = expected_user or owner
    # An unknown credential still counts against the IP (an empty email).
    email = "" if claimed is None else claimed.email
    attempt = throttle.begin_attempt(state, email, ip, now)
    refused = (
        attempt is None
        or pending is None
        or pending.user_id != (None if expected_user is None else expected_user.id)
        or stored is None
        or owner is None
        or owner.disabled
        or throttle.is_locked(owner, now)
        or (expected_user is not None and owner.id != expected_user.id)
    )
    verified = None
    if not refused and stored is not None and pending is not None:
        rp_id, origin = relying_party(state)
        try:
            verified = verify_authentication_response(
                credential=credential_json,
                expected_challenge=pending.challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=stored.public_key,
                credential_current_sign_count=stored.sign_count,
                require_user_verification=mode == "passwordless",
            )
        except (WebAuthnException, ValueError, TypeError, KeyError):
            verified = None
        if verified is not None and mode == "passwordless" and owner is not None:
            handle = credential_json["response"].get("userHandle")
            if not isinstance(handle, str) or _decoded(handle) != _user_handle(owner):
                verified = None
    if verified is None or stored is None or owner is None or attempt is None:
        if attempt is not None:
            users.login_failed(
                state,
                request_actor(None),
                email=email,
                ip=ip,
                user=claimed,
                now=now,
                step="passkey",
                attempt=attempt,
            )
        return _json_error(401, FAILED)
    throttle.forget_attempt(state, attempt)
    actor = request_actor(owner)
    with state.store.unit_of_work(actor):
        users.use_passkey(state, stored, verified.new_sign_count)
        if mode == "reauth":
            session_now = current_session()
            assert session_now is not None
            sessions.issue(
                state,
                owner,
                stage=sessions.STAGE_FULL,
                mfa_at=now,
                created_at=session_now.created_at,
            )
            users.record_event(state, actor, "console.reauth", owner, method="passkey")
            return jsonify(
                {"ok": True, "redirect": safe_next(next_url) or url_for("console.index")}
            )
        response = complete_sign_in(
            state, owner, "passkey" if mode == "mfa" else "passkey_passwordless", next_url
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
    users.rename_passkey(state, request_actor(user), credential, name)
    flash("Passkey renamed.", "info")
    return redirect(url_for("console.account"))


@bp.post("/account/passkeys/<credential_id>/remove")
@requires_recent_mfa
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
    users.remove_passkey(state, request_actor(user), credential)
    flash(f"Passkey “{credential.name}” removed.", "info")
    return redirect(url_for("console.account"))
