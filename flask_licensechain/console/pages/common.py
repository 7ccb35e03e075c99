"""What every business page shares: the console actor, the app restriction, and turning a
service's typed error into a message on the page.

- ``console_actor()``: the ``Actor`` the services record for the signed-in user
  (``kind="console"``, ``id``: the user id, ``name``: the role; never the email or the
  display name, which are personal data). The client's IP and user agent ride along: the
  audit log keeps them outside its hash chain.
- ``visible_app_ids()`` / ``check_app(app_id)`` / ``check_unrestricted(what)``: an
  app-limited user sees only its apps; any other app is 404, as for an app-limited API key.
- ``service_call()``: a ``LicenseChainError`` from a service (400, 403, 404, 409, 503)
  becomes a flashed message and the HTTP status the API would answer, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import abort, flash

from ...core.errors import LicenseChainError
from ...store import Actor
from ..actors import request_actor
from ..auth import current_user, user_may_access_app
from ..repository import ConsoleUser


def signed_in_user() -> ConsoleUser:
    """The signed-in user (the views are guarded, so there is one)."""
    user = current_user()
    if user is None:  # pragma: no cover - every page view is guarded
        abort(401)
    return user


def console_actor() -> Actor:
    """The ``Actor`` of the signed-in user for the service layer."""
    return request_actor(signed_in_user())


def visible_app_ids() -> tuple[str, ...] | None:
    """The apps the user is limited to; ``None`` for every app."""
    user = signed_in_user()
    return user.app_ids or None


def check_app(app_id: str | None) -> None:
    """404 unless the user may act on ``app_id`` (as the API answers an app-limited key)."""
    if app_id is None or not user_may_access_app(app_id):
        abort(404)


def check_unrestricted(what: str) -> None:
    """403 for an app-limited user: only a user of every app may ``what``."""
    if visible_app_ids() is not None:
        abort(403, description=f"A user limited to some apps cannot {what}.")


@dataclass
class Outcome:
    """What ``service_call`` saw: ``status`` stays 200 unless the service refused."""

    status: int = 200
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status < 400


@contextmanager
def service_call() -> Iterator[Outcome]:
    """Run a service call; its ``LicenseChainError`` is flashed and its status kept."""
    outcome = Outcome()
    try:
        yield outcome
    except LicenseChainError as exc:
        # ``description`` is safe to show; ``detail`` is for logs only
        outcome.status = exc.status_code if exc.status_code >= 400 else 500
        outcome.errors.append(exc.description)
        flash(exc.description, "error")


def now() -> datetime:
    return datetime.now(UTC)
