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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import click
import sqlalchemy.exc
from flask import current_app
from flask.cli import ScriptInfo

from .core.errors import LicenseChainError
from .extension import get_state
from .store import migrate
from .store.database import Database
from .store.migrate import SchemaStatus, SchemaVersionError

log = logging.getLogger("licensechain.cli")

db_cli = click.Group("db", help="The store's schema: show its revision, migrate it.")

_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print exactly one JSON object, errors included."
)


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@db_cli.command("current")
@_json_option
def current(as_json: bool) -> None:
    """Show the store's schema revision and the newest this code knows."""
    _run(as_json, lambda db: _report(None, migrate.status(db)))


@db_cli.command("upgrade")
@click.argument("revision", default="head")
@_json_option
def upgrade(as_json: bool, revision: str) -> None:
    """Migrate the store up to REVISION (default: head). Safe to run again."""
    _run(as_json, lambda db: _report(*migrate.upgrade(db, revision)))


@db_cli.command("downgrade")
@click.argument("revision")
@_json_option
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
    except _Failure as failure:
        _fail(as_json, failure.code, failure.message)
    except SchemaVersionError as error:
        _fail(as_json, f"schema_{error.status.state}", str(error))
    except ValueError as error:
        _fail(as_json, "invalid_request", str(error))
    except LicenseChainError as error:
        text = error.description
        if error.detail:
            text += " " + error.detail.splitlines()[0][:300]
        _fail(as_json, error.code, text)
    except (RuntimeError, OSError, sqlalchemy.exc.SQLAlchemyError) as error:
        log.debug("licensechain db failed", exc_info=True)
        _fail(as_json, "error", str(error).splitlines()[0] if str(error) else type(error).__name__)
    if as_json:
        click.echo(json.dumps(data, separators=(",", ":")))
    else:
        click.echo(_human(data))


def _fail(as_json: bool, code: str, message: str) -> None:
    if as_json:
        click.echo(json.dumps({"error": code, "message": message}, separators=(",", ":")))
        raise click.exceptions.Exit(1)
    raise click.ClickException(message)


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
        raise _Failure("app_not_found", error.format_message()) from error
    with app.app_context():
        return _database_of_state()


def _database_of_state() -> Database:
    store = get_state().store
    if store is None:
        raise _Failure(
            "not_an_issuer",
            "This app's LicenseChain is in integrator mode (LICENSECHAIN_JWKS_URL or "
            "LICENSECHAIN_JWKS_FILE is set): it has no store.",
        )
    return store.database


__all__ = ["db_cli"]
