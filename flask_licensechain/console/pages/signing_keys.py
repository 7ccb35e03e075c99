"""Signing keys: the active key and the retiring ones still in the JWKS (their ``kid``, RFC
7638 thumbprint, and until when their last tokens live), and a rotation.

Rotating calls ``services.signing_keys.rotate_signing_key`` (``keys:rotate``, a user of
every app, and a second factor checked within ``LICENSECHAIN_CONSOLE_MFA_MAX_AGE``). The
page shows public keys only; private keys never leave the store's sealing.
"""

from __future__ import annotations

from typing import Any, Final

from flask import flash, redirect, render_template, url_for

from ...services import signing_keys as signing_key_service
from ...state import get_issuer_state
from ..auth import requires_recent_mfa, requires_scope
from ..blueprint import bp
from .common import check_unrestricted, console_actor, now, service_call

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Signing keys", "console.signing_keys", "apps:read")


def _page(status: int = 200) -> tuple[str, int]:
    keys = get_issuer_state().store.signing_keys.trusted(now())
    return (
        render_template(
            "console/pages/signing_keys.html",
            active=[key for key in keys if key.state == "active"],
            retiring=[key for key in keys if key.state != "active"],
        ),
        status,
    )


@bp.get("/signing-keys")
@requires_scope("apps:read")
def signing_keys() -> Any:
    return _page()


@bp.post("/signing-keys/rotate")
@requires_scope("keys:rotate")
@requires_recent_mfa
def rotate_signing_key() -> Any:
    check_unrestricted("rotate the signing key")
    with service_call() as outcome:
        result = signing_key_service.rotate_signing_key(get_issuer_state(), console_actor())
    if not outcome.ok:
        return _page(outcome.status)
    flash(
        f"New signing key {result.kid}; the previous one stays in the JWKS until it expires.",
        "info",
    )
    return redirect(url_for("console.signing_keys"), 303)
