"""``flask licensechain users ...``: the admin console's people, from the command line.

    flask --app APP licensechain users create --email ada@example.com --role owner
    flask --app APP licensechain users list
    flask --app APP licensechain users setup-link ada@example.com
    flask --app APP licensechain users unlock ada@example.com

``create`` and ``setup-link`` print a one-time setup link that expires in 24 hours (the
person chooses a password, then a second factor). They need ``LICENSECHAIN_CONSOLE`` on.
The console's modules need the ``console`` extra; without it ``flask licensechain`` still
works and these commands say what to install.
"""

from __future__ import annotations

from typing import Any

import click

from .command import CommandFailure, LicenseChainGroup, cli_actor, emit, issuer

try:  # the console extra is optional
    from .console import people
    from .console import state as console_module
    from .services import users
except ImportError:  # pragma: no cover - exercised without the extra
    HAS_CONSOLE_EXTRA = False
else:
    HAS_CONSOLE_EXTRA = True

users_cli = LicenseChainGroup("users", help="Console users: create, list, setup links, unlock.")


def _console() -> tuple[Any, Any, Any]:
    """The console's state, its ``people`` module and the ``services.users`` module.
    ``CommandFailure`` unless this app serves the console (and its extra is installed)."""
    state, _ = issuer()
    if not state.settings.console or not HAS_CONSOLE_EXTRA:
        raise CommandFailure(
            "console_off",
            "The console is not enabled on this app: set LICENSECHAIN_CONSOLE = True "
            "(pip install 'flask-licensechain[console]').",
        )
    return console_module.console_state(), people, users


def _user_json(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "displayName": user.display_name,
        "role": user.role,
        "appIds": list(user.app_ids),
        "disabled": user.disabled,
        "lockedUntil": None if user.locked_until is None else user.locked_until.isoformat(),
        "mfa": {"totp": user.totp_enabled},
    }


@users_cli.command("create", help="Create a console user and print a one-time setup link.")
@click.option("--email", required=True, help="The person's email address (their sign-in name).")
@click.option(
    "--role",
    required=True,
    help="Their role: owner, admin, developer, support, auditor or readonly.",
)
@click.option(
    "--name", "display_name", default=None, help="Display name (default: from the email)."
)
@click.option("--app-id", "app_ids", multiple=True, help="Limit them to this app (repeat).")
@click.option("--base-url", default=None, help="The console's URL for the link.")
def create(
    as_json: bool,
    email: str,
    role: str,
    display_name: str | None,
    app_ids: tuple[str, ...],
    base_url: str | None,
) -> None:
    state, people, users = _console()
    user, token = users.create_user(
        state, cli_actor(), email=email, role=role, display_name=display_name, app_ids=app_ids
    )
    link = people.setup_link(state, token, base_url)
    expires = (state.clock() + people.SETUP_LINK_LIFETIME).isoformat()
    emit(
        as_json,
        {"user": _user_json(user), "setupLink": link, "expiresAt": expires},
        f"Created console user {user.email} ({user.role}).\n"
        f"Setup link (one use, expires {expires}):\n  {link}",
    )


@users_cli.command("setup-link", help="Print a new one-time setup link for a user.")
@click.argument("user")
@click.option("--base-url", default=None, help="The console's URL for the link.")
def setup_link(as_json: bool, user: str, base_url: str | None) -> None:
    state, people, users = _console()
    found = people.find_user(state, user)
    token = users.issue_setup_link(state, cli_actor(), found)
    link = people.setup_link(state, token, base_url)
    emit(
        as_json,
        {"user": _user_json(found), "setupLink": link},
        f"Setup link for {found.email}:\n  {link}",
    )


@users_cli.command("list", help="List console users.")
def list_users(as_json: bool) -> None:
    state, _, _ = _console()
    users = state.repo.list_users()
    lines = [f"{u.id}  {u.email}  {u.role}{'  disabled' if u.disabled else ''}" for u in users]
    emit(
        as_json, {"users": [_user_json(u) for u in users]}, "\n".join(lines) or "No console users."
    )


@users_cli.command("unlock", help="Lift a user's sign-in lock after too many failures.")
@click.argument("user")
def unlock(as_json: bool, user: str) -> None:
    state, people, users = _console()
    found = people.find_user(state, user)
    users.unlock(state, cli_actor(), found)
    emit(as_json, {"user": _user_json(found), "unlocked": True}, f"Unlocked {found.email}.")
