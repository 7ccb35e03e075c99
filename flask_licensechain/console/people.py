"""Console users: email checks, setup-link hashes and URLs, look-ups.

The changes (create with a one-time setup link, change role, disable, unlock) are in
``services/users.py``, each in one unit of work with its audit event; the CLI
(``flask licensechain users ...``) and the console's Users page call them there.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

from ..core.errors import InvalidRequest, NotFound
from . import throttle
from .repository import ConsoleUser
from .state import ConsoleState

SETUP_LINK_LIFETIME: Final = timedelta(hours=24)
_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def check_email(email: str) -> str:
    """The lower-cased address; ``InvalidRequest`` unless it looks like ``local@domain``."""
    normalized = throttle.normalize_email(email)
    if not _EMAIL.match(normalized):
        raise InvalidRequest(f"Not an email address: {email!r}.")
    return normalized


def setup_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def console_base_url(state: ConsoleState) -> str | None:
    """``LICENSECHAIN_CONSOLE_URL``, else the issuer's origin plus the console path, else
    None (then links are printed as paths)."""
    settings = state.settings
    if settings.console_url:
        return settings.console_url.rstrip("/")
    if settings.issuer:
        parts = urlsplit(settings.issuer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}{settings.console_path.rstrip('/')}"
    return None


def setup_link(state: ConsoleState, token: str, base_url: str | None = None) -> str:
    base = (base_url.rstrip("/") if base_url else None) or console_base_url(state)
    path = f"/setup/{token}"
    return f"{base}{path}" if base else state.settings.console_path.rstrip("/") + path


def find_user(state: ConsoleState, ident: str) -> ConsoleUser:
    """A user by id or email; ``NotFound`` otherwise."""
    user = state.repo.get_user(ident) or state.repo.find_user_by_email(
        throttle.normalize_email(ident)
    )
    if user is None:
        raise NotFound("Console user not found.")
    return user
