"""``flask licensechain db ...``: the store's schema revision, and migrating it.

    flask --app APP licensechain db current            where the schema stands
    flask --app APP licensechain db upgrade [REV]      migrate up (default: the newest, head)
    flask --app APP licensechain db downgrade REV      migrate down (``base`` drops every table)

Each takes ``--json`` and then prints exactly one JSON object on stdout, errors included:
``{"state", "revision", "head"}`` (``upgrade`` and ``downgrade`` add ``"from"``, the revision
before), or ``{"error": "<code>", "message": "<text>"}`` with exit status 1. Without ``--json``
an error is one line on stderr, exit status 1, no traceback.

These commands work on a store the server refuses (older or newer than the code): the
refusal carries the store, so the app does not have to start for its schema to be migrated.
That is why they load the app themselves instead of through Flask's ``with_appcontext``;
their errors go through the same translation as every ``flask licensechain`` command
(``flask_licensechain.command``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from flask import current_app
from flask.cli import ScriptInfo

from .command import CommandFailure, LicenseChainGroup, emit
from .state import get_state
from .store import migrate
from .store.database import Database
from .store.migrate import SchemaStatus, SchemaVersionError

db_cli = LicenseChainGroup("db", help="The store's schema: show its revision, migrate it.")


@db_cli.command("current", with_appcontext=False)
def current(as_json: bool) -> None:
    """Show the store's schema revision and the newest this code knows."""
    _run(as_json, lambda db: _report(None, migrate.status(db)))


@db_cli.command("upgrade", with_appcontext=False)
@click.argument("revision", default="head")
def upgrade(as_json: bool, revision: str) -> None:
    """Migrate the store up to REVISION (default: head). Safe to run again."""
    _run(as_json, lambda db: _report(*migrate.upgrade(db, revision)))


@db_cli.command("downgrade", with_appcontext=False)
@click.argument("revision")
def downgrade(as_json: bool, revision: str) -> None:
    """Migrate the store down to REVISION; "base" drops every LicenseChain table."""
    _run(as_json, lambda db: _report(*migrate.downgrade(db, revision)))


# -- plumbing ---------------------------------------------------------------------------


def _report(before: SchemaStatus | None, after: SchemaStatus) -> dict[str, Any]:
    data: dict[str, Any] = after.as_dict()
    if before is not None:
        data = {"from": before.revision, **data}
    return data


def _human(data: dict[str, Any]) -> str:
    at = data["revision"] or "none"
    text = f"LicenseChain schema at revision {at} (newest known: {data['head']}): {data['state']}."
    if "from" in data and data["from"] != data["revision"]:
        text = f"Migrated from revision {data['from'] or 'none'}. " + text
    return text


def _run(as_json: bool, action: Callable[[Database], dict[str, Any]]) -> None:
    try:
        data = action(_database())
    except SchemaVersionError as error:
        raise CommandFailure(f"schema_{error.status.state}", str(error)) from error
    except ValueError as error:  # an unknown revision
        raise CommandFailure("invalid_request", str(error)) from error
    emit(as_json, data, _human(data))


def _database() -> Database:
    """The store of the app: the running one, or the one ``--app`` names, or the store that
    app refused to start on."""
    if current_app:
        return _database_of_state()
    try:
        app = click.get_current_context().ensure_object(ScriptInfo).load_app()
    except SchemaVersionError as refused:
        return refused.database
    except click.ClickException as error:
        raise CommandFailure("app_not_found", error.format_message()) from error
    with app.app_context():
        return _database_of_state()


def _database_of_state() -> Database:
    store = get_state().store
    if store is None:
        raise CommandFailure(
            "not_an_issuer",
            "This app's LicenseChain is in integrator mode (LICENSECHAIN_JWKS_URL or "
            "LICENSECHAIN_JWKS_FILE is set): it has no store.",
        )
    return store.database


__all__ = ["db_cli"]
