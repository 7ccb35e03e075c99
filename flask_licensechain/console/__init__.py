"""The admin console: a server-rendered blueprint where people sign in and run the business.

Enabled by ``LICENSECHAIN_CONSOLE = True`` (off by default; needs the ``console`` extra and
Flask's ``SECRET_KEY``), served at ``LICENSECHAIN_CONSOLE_PATH`` (default ``/console``).
People are console users (``flask licensechain users create --email E --role owner`` prints
a one-time setup link), separate from API keys; each has a role (``roles.ROLES``) and
optionally a list of apps.

For the pages (``console/pages/``: add your routes to ``blueprint.bp`` and one line
``from . import pages`` below, after ``account``):

- ``bp`` (``flask_licensechain.console.blueprint``): the blueprint; endpoints are
  ``console.<name>``. ``add_nav(label, endpoint, scope)`` adds a link to the navigation bar,
  shown only to roles that grant ``scope``. ``console.index`` redirects to
  ``console.overview`` once such an endpoint exists.
- ``@login_required``, ``@requires_scope("licenses:write")`` (403 for a role without the
  scope), ``@requires_recent_mfa`` (second factor checked within
  ``LICENSECHAIN_CONSOLE_MFA_MAX_AGE`` seconds, else a re-check page that comes back),
  ``current_user()`` (a ``ConsoleUser``: ``id``, ``email``, ``display_name``, ``role``,
  ``app_ids``, empty meaning every app), ``user_can(scope)``, ``user_may_access_app(app_id)``
  (``flask_licensechain.console.auth``). Templates get ``console_user`` and
  ``lc_user_can(scope)`` to hide what a role may not do; the server still refuses it.
- ``audit_event(store, action, actor=..., target=..., **data)`` (``console.audit``): the one
  audit helper; ``actor_of(user)`` gives ``user:<id>``.
- Templates extend ``console/base.html`` and fill ``{% block content %}`` (and ``{% block
  title %}``); ``console/macros.html`` has ``field(f)`` (a labelled control with its
  errors) and ``action(url, label, form)`` (a one-button POST form with its CSRF token).
  Every POST form carries ``{{ form.csrf_token }}`` or ``csrf_token()``: the blueprint
  refuses a POST without a valid token (400). No inline script or style: the
  Content-Security-Policy forbids them; put JavaScript in ``static/console/``.
- Tests: ``tests/console_support.py`` makes a console app and a signed-in test client for a
  role (``signed_in_client(app, role="support")``), without a browser.

Roles map to scopes through the shared role table, ``flask_licensechain/roles.py``.
"""

from __future__ import annotations

from typing import Final

from flask import Flask

from ..core.errors import ConfigError
from ..state import IssuerState
from . import account, signin
from .auth import current_user, login_required, requires_recent_mfa, requires_scope
from .blueprint import bp, csrf
from .passwords import Passwords
from .repository import ConsoleRepository
from .sealing import derive_console_key
from .state import CONSOLE_KEY, ConsoleState, console_state

_VIEWS: Final = (account, signin)  # imported for their routes

#: flask-wtf's settings, as ``CSRFProtect.init_app`` would set them (it is not called:
#: that would guard every view of the app, the JSON API included)
_CSRF_DEFAULTS: Final = {
    "WTF_CSRF_ENABLED": True,
    "WTF_CSRF_FIELD_NAME": "csrf_token",
    "WTF_CSRF_HEADERS": ["X-CSRFToken", "X-CSRF-Token"],
    "WTF_CSRF_TIME_LIMIT": 3600,
    "WTF_CSRF_SSL_STRICT": True,
}


def init_console(
    app: Flask, state: IssuerState, encryption_key: bytes, *, passwords: Passwords | None = None
) -> ConsoleState:
    """Register the console blueprint on ``app`` at ``LICENSECHAIN_CONSOLE_PATH``, over the
    issuer's store. ``encryption_key`` is the store's sealing key (a sub-key of it seals
    TOTP secrets). Raises ``ConfigError`` without Flask's ``SECRET_KEY``."""
    if not app.secret_key:
        raise ConfigError(
            "LICENSECHAIN_CONSOLE needs Flask's SECRET_KEY (it signs the CSRF tokens of the "
            "console's forms)"
        )
    for key, value in _CSRF_DEFAULTS.items():
        app.config.setdefault(key, value)
    app.config["WTF_CSRF_METHODS"] = {"POST", "PUT", "PATCH", "DELETE"}
    settings = state.settings
    console = ConsoleState(
        settings=settings,
        store=state.store,
        repo=ConsoleRepository(state.store.database),
        passwords=passwords or Passwords(),
        sealing_key=derive_console_key(encryption_key),
    )
    app.extensions[CONSOLE_KEY] = console
    app.register_blueprint(bp, url_prefix=settings.console_path.rstrip("/") or None)
    return console


__all__ = [
    "ConsoleState",
    "bp",
    "console_state",
    "csrf",
    "current_user",
    "init_console",
    "login_required",
    "requires_recent_mfa",
    "requires_scope",
]
