"""``flask licensechain api-keys ...`` and ``create-api-key``: the API-key lifecycle.

    flask --app APP licensechain api-keys list [--active]
    flask --app APP licensechain api-keys show KEY_ID
    flask --app APP licensechain api-keys create --name N (--role R | --scope S ...)
        [--app APP_ID ...] [--expires DATE] [--description TEXT] [--test]
    flask --app APP licensechain api-keys rotate KEY_ID [--grace SECONDS]
    flask --app APP licensechain api-keys revoke KEY_ID
    flask --app APP licensechain create-api-key --name N --scope S   (the contract's form)

The CLI acts as ``cli`` (``command.cli_actor()``) with every right, through the same service
functions as the HTTP API (``services/api_keys.py``), so each change is recorded as
``api_key.*`` in the same transaction. Secrets are printed once (create, rotate); list and
show never print them. ``--json`` prints the API's JSON objects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import click
from flask.cli import with_appcontext

from .command import LicenseChainCommand, LicenseChainGroup, cli_actor, emit, issuer
from .roles import ROLE_NAMES, SCOPES
from .serialize import api_key_json, iso, parse_timestamp
from .services import api_keys as service
from .store import ApiKeyRecord
from .store.api_keys import DEFAULT_ROTATION_GRACE, MAX_ROTATION_GRACE

api_keys_cli = LicenseChainGroup("api-keys", help="List, show, create, rotate and revoke API keys.")


def _line(key: ApiKeyRecord, now: datetime) -> str:
    shown = api_key_json(key, now)
    rights = f"role {key.role}" if key.role else "scopes " + ",".join(key.scopes)
    apps = "every app" if key.app_ids is None else "apps " + ",".join(sorted(key.app_ids))
    return (
        f"{key.id}  {key.prefix}…  {shown['status']:<7}  {key.name!r}  {rights}  {apps}  "
        f"last used {iso(key.last_used_at) or 'never'} ({key.usage_count} uses)"
    )


def _create(
    *,
    name: str,
    scopes: tuple[str, ...],
    role: str | None,
    apps: tuple[str, ...],
    expires: str | None,
    description: str | None,
    test_key: bool,
) -> tuple[ApiKeyRecord, str]:
    if role is not None and scopes:
        raise click.UsageError("Give --role or --scope, not both.")
    if role is None and not scopes:
        raise click.UsageError("Give --role or at least one --scope.")
    _, store = issuer()
    return service.create_key(
        store,
        cli_actor(),
        creator=None,
        name=name,
        scopes=scopes or None,
        role=role,
        description=description,
        environment="test" if test_key else "live",
        app_ids=apps or None,
        expires_at=None if expires is None else parse_timestamp(expires, "--expires"),
    )


_SCOPE_OPTION = click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help="A scope it grants (repeat the option); * grants all.",
)
_ROLE_OPTION = click.option(
    "--role", type=click.Choice(ROLE_NAMES), default=None, help="A role instead of scopes."
)
_APP_OPTION = click.option(
    "--app", "apps", multiple=True, help="Limit it to this app id (repeat for several)."
)
_EXPIRES_OPTION = click.option(
    "--expires", default=None, help="ISO 8601 date-time when it stops working; default never."
)
_DESCRIPTION_OPTION = click.option("--description", default=None, help="What it is for.")
_TEST_OPTION = click.option(
    "--test", "test_key", is_flag=True, help="An lc_test_ key (test-mode apps) instead of lc_live_."
)


_NEW_KEY_OPTIONS: Final = (
    click.option("--name", required=True, help="What the key is for."),
    _SCOPE_OPTION,
    _ROLE_OPTION,
    _APP_OPTION,
    _EXPIRES_OPTION,
    _DESCRIPTION_OPTION,
    _TEST_OPTION,
)


def _new_key_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of a new key (``create-api-key`` and ``api-keys create``), in order."""
    for option in reversed(_NEW_KEY_OPTIONS):
        command = option(command)
    return command


_SHOWN_ONCE: Final = "It is stored only as a hash and cannot be shown again."


@click.command(
    "create-api-key",
    cls=LicenseChainCommand,
    help="Create an admin API key. It is shown once: keep it.",
)
@_new_key_options
@with_appcontext
def create_api_key(as_json: bool, **options: Any) -> None:
    record, plaintext = _create(**options)
    emit(
        as_json,
        {"id": record.id, "key": plaintext, "scopes": list(record.scopes)},
        f"Created API key {record.id} with scopes {', '.join(record.scopes)}:\n"
        f"  {plaintext}\n{_SHOWN_ONCE}",
    )


@api_keys_cli.command("create", help="Create an API key. It is shown once: keep it.")
@_new_key_options
def create(as_json: bool, **options: Any) -> None:
    record, plaintext = _create(**options)
    emit(
        as_json,
        {**api_key_json(record), "key": plaintext},
        f"Created API key {record.id}:\n  {plaintext}\n{_SHOWN_ONCE}",
    )


@api_keys_cli.command("list", help="Every API key (never its secret).")
@click.option("--active", "active_only", is_flag=True, help="Leave out revoked keys.")
def list_keys(as_json: bool, active_only: bool) -> None:
    _, store = issuer()
    now = datetime.now(UTC)
    store.api_keys.usage.flush(quiet=True)
    keys = store.api_keys.list(include_revoked=not active_only)
    emit(
        as_json,
        {"apiKeys": [api_key_json(k, now) for k in keys], "total": len(keys)},
        "\n".join(_line(k, now) for k in keys) or "No API keys.",
    )


@api_keys_cli.command("show", help="One API key by id (never its secret).")
@click.argument("key_id")
def show(as_json: bool, key_id: str) -> None:
    _, store = issuer()
    key = service.visible_key(store, None, key_id)
    shown = api_key_json(key)
    human = "\n".join(f"{field}: {value}" for field, value in shown.items())
    emit(as_json, shown, human)


@api_keys_cli.command("revoke", help="Revoke an API key (and its previous secret) at once.")
@click.argument("key_id")
def revoke(as_json: bool, key_id: str) -> None:
    _, store = issuer()
    key = service.revoke_key(store, cli_actor(), key_id, creator=None)
    emit(as_json, api_key_json(key), f"API key {key.id} is revoked.")


@api_keys_cli.command(
    "rotate", help="A new secret for an API key; the old one works for the grace period."
)
@click.argument("key_id")
@click.option(
    "--grace",
    type=click.IntRange(0, int(MAX_ROTATION_GRACE.total_seconds())),
    default=int(DEFAULT_ROTATION_GRACE.total_seconds()),
    show_default=True,
    help="Seconds the old secret keeps working (0: it stops now).",
)
def rotate(as_json: bool, key_id: str, grace: int) -> None:
    _, store = issuer()
    key, plaintext = service.rotate_key(
        store, cli_actor(), key_id, creator=None, grace=timedelta(seconds=grace)
    )
    until = iso(key.previous_expires_at) or "now"
    emit(
        as_json,
        {**api_key_json(key), "key": plaintext},
        f"New secret for API key {key.id}:\n  {plaintext}\n"
        f"It cannot be shown again. The previous secret works until {until}.",
    )


__all__ = ["api_keys_cli", "create_api_key"]
