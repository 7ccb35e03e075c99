"""What every ``flask licensechain`` command shares: the ``--json`` option, the one
translation of errors, and output.

Under ``--json`` a command prints exactly one JSON object on stdout, errors included:
``{"error": <code>, "message": <text>}`` with exit status 1 (2 for a usage error). Without
it an error is one line on stderr (``Error: ...``), never a traceback. Errors raised while
Flask loads the app (bad configuration, a store that is down) are reported the same way,
because the translation wraps the whole command, app loading included.

A command group of another module (``LicenseChainGroup(...)``) gets all of this and is
added to ``flask licensechain`` with one ``licensechain_cli.add_command(...)`` line.
"""

from __future__ import annotations

import getpass
import json
import logging
from typing import IO, Any

import click
import sqlalchemy.exc
from flask.cli import AppGroup

from .core.errors import LicenseChainError
from .state import IssuerState, get_issuer_state
from .store import Actor, AppRecord, Store

log = logging.getLogger("licensechain.cli")

AUDIT_ACTOR = "cli"
JSON_OPTION = "as_json"


class CommandFailure(Exception):
    """Raised by a command for a failure with its own error ``code`` (``not_an_issuer``,
    ``schema_newer``...) and ``message``; reported like any other error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: What loading a misconfigured app, reaching a dead store or bad input raises.
_COMMAND_ERRORS = (
    CommandFailure,
    LicenseChainError,
    RuntimeError,
    ValueError,
    OSError,
    sqlalchemy.exc.SQLAlchemyError,
)


class CommandError(click.ClickException):
    """A failed command: one line on stderr, or under ``--json`` one JSON object on stdout.

    ``code`` is the API's error code for a ``LicenseChainError`` (``not_found``,
    ``invalid_request``, ``unavailable``...), ``usage_error`` for bad arguments and
    ``command_failed`` otherwise.
    """

    def __init__(self, message: str, *, code: str, as_json: bool) -> None:
        super().__init__(message)
        self.code = code
        self.as_json = as_json

    def show(self, file: IO[Any] | None = None) -> None:
        if self.as_json:
            click.echo(dumps({"error": self.code, "message": self.format_message()}))
        else:
            super().show(file)


class CommandUsageError(CommandError):
    """Bad arguments: exit status 2, as click's own usage errors."""

    exit_code = 2


def command_error(exc: Exception, *, as_json: bool) -> CommandError:
    """The one translation of an exception into the command's error."""
    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, CommandFailure):
        return CommandError(exc.message, code=exc.code, as_json=as_json)
    if isinstance(exc, click.UsageError):
        return CommandUsageError(exc.format_message(), code="usage_error", as_json=as_json)
    if isinstance(exc, click.ClickException):
        return CommandError(exc.format_message(), code="command_failed", as_json=as_json)
    if isinstance(exc, LicenseChainError):
        return CommandError(_error_text(exc), code=exc.code, as_json=as_json)
    return CommandError(_error_text(exc), code="command_failed", as_json=as_json)


def _error_text(exc: Exception) -> str:
    if not isinstance(exc, LicenseChainError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # ``description`` is written for people ("App not found."). A server-side failure (store
    # down, bad key material) also shows the first line of its cause: the operator needs it.
    if exc.status_code >= 500 and exc.detail:
        return f"{exc.description} {exc.detail.splitlines()[0][:300]}"
    return exc.description


class LicenseChainCommand(click.Command):
    """A ``licensechain`` command: it takes ``--json``, and every error it raises, loading
    the app included, goes through ``command_error``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(
            click.Option(
                ["--json", JSON_OPTION], is_flag=True, help="Print exactly one JSON object."
            )
        )

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        as_json = "--json" in args  # read first: parsing consumes ``args``
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            if not as_json:
                raise  # click prints the usage with it
            raise command_error(exc, as_json=True) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, *_COMMAND_ERRORS) as exc:
            log.debug("licensechain %s failed", ctx.info_name, exc_info=True)
            raise command_error(exc, as_json=bool(ctx.params.get(JSON_OPTION))) from None


class LicenseChainGroup(AppGroup):
    """Flask's ``AppGroup`` (each command runs in the app's context) of
    ``LicenseChainCommand``; its subgroups are ``LicenseChainGroup`` too."""

    command_class = LicenseChainCommand
    group_class = type


def issuer() -> tuple[IssuerState, Store]:
    """The current app's issuer state and store (``RuntimeError`` in integrator mode)."""
    state = get_issuer_state()
    return state, state.store


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def emit(as_json: bool, data: dict[str, Any], human: str) -> None:
    """Print ``data`` as one compact JSON object under ``--json``, else ``human``."""
    click.echo(dumps(data) if as_json else human)


def cli_actor() -> Actor:
    """The ``Actor`` of a command's changes: ``cli`` with the OS user who ran it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (some containers)
        user = "unknown"
    return Actor(kind="cli", id=user, name=AUDIT_ACTOR)


#: how the commands name themselves in messages
CLI = "flask licensechain"


def find_app(state: IssuerState, app_id: str) -> AppRecord:
    """The app ``app_id``; ``CommandFailure`` (``not_found``) saying how to list the apps."""
    app = state.store.apps.get(app_id)
    if app is None:
        raise CommandFailure(
            "not_found", f"App {app_id} not found; `{CLI} apps list` shows the apps."
        )
    return app
