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
  ``app_ids``, empty meaning every app), ``console_actor()`` (that user as the service
  layer's ``Actor``, kind ``console``: pass it to ``flask_licensechain.services``),
  ``user_can(scope)``, ``user_may_access_app(app_id)`` (``flask_licensechain.console.auth``).
  Templates get ``console_user`` and ``lc_user_can(scope)`` to hide what a role may not do;
  the server still refuses it.
- The console's own changes (people, second factors, sessions) and its sign-in events are
  services of ``flask_licensechain.services.users``: each commits with its audit event, or
  not at all; ``console.actors.request_actor(user)`` is the ``Actor`` they take.
- Templates extend ``console/base.html`` and fill ``{% block content %}`` (and ``{% block
  title %}``); ``console/macros.html`` has ``field(f)`` (a labelled control with its
  errors) and ``action(url, label, form)`` (a one-button POST form with its CSRF token).
  Every POST form carries ``{{ form.csrf_token }}`` or ``csrf_token()``: the blueprint
  refuses a POST without a valid token (400). No inline script or style: the
  Content-Security-Policy forbids them; put JavaScript in ``static/console/``.
- People (for the Users page): ``services.users.create_user`` (returns the user and a
  one-time setup token; ``people.setup_link`` makes the URL), ``services.users.set_role`` and
  ``services.users.set_disabled`` (both end the person's sessions), ``services.users.unlock``.
  Changing roles is a sensitive action: guard it with ``@requires_recent_mfa``.
- Tests: ``tests/console_support.py`` makes a console app and a signed-in test client for a
  role (``signed_in_client(app, role="support")``), without a browser; ``post_form`` adds
  the CSRF token; as a pytest plugin it gives ``console_app`` and ``console_clock``.

Modules: ``signin`` (password, second factor, setup link, re-check), ``passkeys``
(WebAuthn), ``mfa`` (TOTP, backup codes), ``account`` (account security, sessions page),
``sso`` (optional OpenID Connect), ``sessions`` (server-side sessions), ``throttle``
(backoff and lockout), ``passwords`` (Argon2id and policy), ``repository`` (the
``lc_console_*`` tables), ``people`` (user management), ``roles``, ``audit``.

Roles map to scopes through the shared role table, ``flask_licensechain/roles.py``.
"""

from __future__ import annotations

from typing import Final

from flask import Flask

from ..core.errors import ConfigError
from ..state import IssuerState
from . import account, pages, passkeys, signin, sso
from .auth import current_user, login_required, requires_recent_mfa, requires_scope
from .blueprint import bp, csrf
from .passwords import Passwords
from .repository import ConsoleRepository
from .state import CONSOLE_KEY, ConsoleState, console_state

_VIEWS: Final = (account, passkeys, signin, sso, pages)  # imported for their routes

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
    app: Flask, state: IssuerState, *, passwords: Passwords | None = None
) -> ConsoleState:
    """Register the console blueprint on ``app`` at ``LICENSECHAIN_CONSOLE_PATH``, over the
    issuer's store; the issuer's keyring (``state.sealer``) seals TOTP secrets.

    :raises ConfigError: Flask's ``SECRET_KEY`` is not set.
    """
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
        sealer=state.sealer,
    )
    console.sso = sso.init_sso(app, settings)
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
