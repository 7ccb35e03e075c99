"""The console's per-app state, in ``app.extensions["licensechain_console"]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from flask import Flask, current_app

from ..config import Settings
from ..core.sealing import Sealer
from ..store import Store
from .passwords import Passwords
from .repository import ConsoleRepository

CONSOLE_KEY: Final = "licensechain_console"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False, kw_only=True)
class ConsoleState:
    """What the console's views share. ``clock`` gives aware UTC datetimes (tests move it)."""

    settings: Settings
    store: Store
    repo: ConsoleRepository
    passwords: Passwords
    #: the issuer's keyring: it seals TOTP secrets
    sealer: Sealer
    clock: Callable[[], datetime] = utc_now
    #: the OpenID Connect client registry (authlib) when SSO is configured
    sso: Any = None

    @property
    def idle_timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.console_idle_timeout)

    @property
    def absolute_timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.console_absolute_timeout)

    @property
    def mfa_max_age(self) -> timedelta:
        return timedelta(seconds=self.settings.console_mfa_max_age)

    @property
    def lockout(self) -> timedelta:
        return timedelta(seconds=self.settings.console_lockout_seconds)


def console_state(app: Flask | None = None) -> ConsoleState:
    """The console state of ``app`` (default: the current app); ``RuntimeError`` when the
    console is not enabled there (``LICENSECHAIN_CONSOLE``)."""
    target: Flask = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        state: ConsoleState = target.extensions[CONSOLE_KEY]
    except KeyError:
        raise RuntimeError(
            "The LicenseChain console is not enabled (LICENSECHAIN_CONSOLE)."
        ) from None
    return state
