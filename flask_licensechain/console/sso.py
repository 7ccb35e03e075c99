"""Optional single sign-on: OpenID Connect (Core 1.0) through authlib's Flask client.

Configured by ``LICENSECHAIN_CONSOLE_SSO_ISSUER``, ``..._CLIENT_ID`` and
``..._CLIENT_SECRET``; the provider's metadata comes from its discovery document. authlib
runs the authorization-code flow with ``state`` and ``nonce`` and checks the ID token
(signature against the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``).

The person is the console user whose email equals the token's ``email`` with
``email_verified`` true; SSO never creates a user (so never an owner). A disabled or locked
user is refused like any failed sign-in. The provider's multi-factor sign-in counts only
when its ``amr`` (RFC 8176) or ``acr`` holds one of ``LICENSECHAIN_CONSOLE_SSO_MFA_VALUES``;
otherwise the console asks its own second factor next, as after a password.
"""

from __future__ import annotations

from typing import Any, Final

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..client_ip import client_ip
from ..config import Settings
from ..services import users
from . import mfa, sessions, throttle
from .actors import request_actor
from .auth import safe_next
from .blueprint import bp
from .forms import LoginForm
from .signin import FAILED, complete_sign_in
from .state import console_state

CLIENT_NAME: Final = "licensechain_console_sso"
_NEXT_KEY: Final = "lc_console_sso_next"


def sso_enabled(settings: Settings) -> bool:
    return bool(settings.console_sso_issuer and settings.console_sso_client_id)


def init_sso(app: Flask, settings: Settings) -> OAuth | None:
    """Register the OpenID Connect client on ``app`` when SSO is configured."""
    if not sso_enabled(settings):
        return None
    issuer = (settings.console_sso_issuer or "").rstrip("/")
    oauth = OAuth(app)
    oauth.register(
        CLIENT_NAME,
        client_id=settings.console_sso_client_id,
        client_secret=settings.console_sso_client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile"},
    )
    return oauth


def _client() -> Any:
    oauth = console_state().sso
    if oauth is None:
        abort(404)
    return oauth.create_client(CLIENT_NAME)


def idp_mfa(claims: dict[str, Any], accepted: tuple[str, ...]) -> bool:
    """Whether the ID token says the provider did a multi-factor sign-in that counts."""
    if not accepted:
        return False
    amr = claims.get("amr")
    values = set(amr) if isinstance(amr, list) else set()
    acr = claims.get("acr")
    if isinstance(acr, str):
        values.add(acr)
    return bool(values & set(accepted))


@bp.get("/sso/login")
def sso_login() -> BaseResponse:
    client = _client()
    session[_NEXT_KEY] = safe_next(request.args.get("next"))
    redirect_uri = url_for("console.sso_callback", _external=True)
    response: BaseResponse = client.authorize_redirect(redirect_uri)
    return response


@bp.get("/sso/callback")
def sso_callback() -> Any:
    state = console_state()
    client = _client()
    now = state.clock()
    ip = client_ip()
    next_url = session.pop(_NEXT_KEY, None)
    try:
        token = client.authorize_access_token()
    except (OAuthError, ValueError, KeyError) as exc:
        users.record_event(
            state,
            request_actor(None),
            "console.login_failed",
            None,
            step="sso",
            error=type(exc).__name__,
        )
        flash(FAILED, "error")
        return render_template("console/login.html", form=_login_form()), 401
    claims = dict(token.get("userinfo") or {})
    email = claims.get("email")
    verified = claims.get("email_verified") is True
    address = throttle.normalize_email(email) if isinstance(email, str) else ""
    user = state.repo.find_user_by_email(address) if address and verified else None
    if (
        user is None
        or user.disabled
        or throttle.is_locked(user, now)
        or not throttle.allowed(state, address, ip, now)
    ):
        users.login_failed(
            state, request_actor(None), email=address, ip=ip, user=user, now=now, step="sso"
        )
        flash(FAILED, "error")
        return render_template("console/login.html", form=_login_form()), 401
    users.record_event(
        state,
        request_actor(user),
        "console.sso_verified",
        user,
        issuer=claims.get("iss"),
        amr=claims.get("amr"),
        acr=claims.get("acr"),
    )
    if idp_mfa(claims, state.settings.console_sso_mfa_values):
        return complete_sign_in(state, user, "sso_mfa", next_url)
    stage = sessions.STAGE_MFA if mfa.has_second_factor(state, user) else sessions.STAGE_ENROL
    sessions.issue(state, user, stage=stage, mfa_at=None)
    if stage == sessions.STAGE_ENROL:
        return redirect(url_for("console.enrol"))
    return redirect(url_for("console.login_mfa", next=next_url))


def _login_form() -> Any:
    return LoginForm()
