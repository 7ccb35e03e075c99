"""A Flask-Limiter key function for licensed routes: one budget per license.

    from flask_limiter import Limiter
    from flask_licensechain.limiter_keys import license_key_func

    limiter = Limiter(license_key_func, app=app)

    @app.get("/reports/export")
    @limiter.limit("100/minute", key_func=license_key_func)
    @requires_feature("export")
    def export(): ...

``license_key_func()`` returns ``"license:<sub>"`` when the request carries a license token
that the app's gate accepts (signature, claims, the denylist, and ``LICENSECHAIN_AUDIENCE``
when set), and ``"ip:<address>"`` otherwise, the address by the extension's one rule
(``flask_licensechain.client_ip``: ``remote_addr``, so ``X-Forwarded-For`` counts only behind
Werkzeug's ``ProxyFix``). The prefixes keep a license id and an address from ever sharing a
bucket. A license thus has one budget whatever address it comes from, and a client without
a valid token cannot pick another license's bucket: it would need that license's token.

Flask-Limiter checks its limits before the view, so before ``@requires_feature`` has run:
the function verifies the token itself (the verified-token cache makes the gate's second
check cheap), once per request. It never refuses a request: a missing, refused or
unverifiable token (a denylist that is down) falls back to the address. It needs no
Flask-Limiter import and works with any limiter that takes a key callable.
"""

from __future__ import annotations

from typing import Final

from flask import g, request

from .client_ip import client_ip
from .core.errors import LicenseChainError
from .core.gate import authorize
from .decorators import get_current_license
from .state import get_state

LICENSE_PREFIX: Final = "license:"
IP_PREFIX: Final = "ip:"
_G_KEY: Final = "_licensechain_limiter_key"


def license_key_func() -> str:
    """``"license:<sub>"`` for a request with a valid license token, else
    ``"ip:<client address>"``. Call it inside a request of an app with ``LicenseChain``
    (``RuntimeError`` otherwise, as ``get_state``)."""
    cached: str | None = g.get(_G_KEY)
    if cached is not None:
        return cached
    sub = _license_sub()
    key = LICENSE_PREFIX + sub if sub is not None else IP_PREFIX + client_ip()
    setattr(g, _G_KEY, key)
    return key


def _license_sub() -> str | None:
    claims = get_current_license()  # a gate already ran for this request
    if claims is not None:
        return claims.sub
    state = get_state()
    environ = request.environ
    token, _ = state.token_reader.read(
        environ.get("HTTP_AUTHORIZATION"),
        environ.get("HTTP_X_LICENSE_TOKEN"),
        environ.get("HTTP_COOKIE"),
    )
    if token is None:
        return None
    try:
        return authorize(state.verifier, token, audience=state.gate_audience).sub
    except LicenseChainError:
        return None


__all__ = ["IP_PREFIX", "LICENSE_PREFIX", "license_key_func"]
