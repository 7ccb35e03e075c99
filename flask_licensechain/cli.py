"""``flask licensechain ...``: set up and administer an issuer from the command line.

    flask --app APP licensechain init
    flask --app APP licensechain create-app --name "My App" --tier pro
    flask --app APP licensechain create-license --app-id app_... --feature export
    flask --app APP licensechain create-api-key --name ci --scope licenses:write
    flask --app APP licensechain rotate-keys

Every command takes ``--json`` and then prints exactly one JSON object on stdout (the same
shapes the HTTP API answers with), errors included: ``{"error": <code>, "message": <text>}``
with exit status 1 (2 for a usage error). Without ``--json`` an error is one line on stderr,
never a traceback. Errors raised while the app loads (bad configuration, a store that is
down) are reported the same way. The commands call the store's repositories and the
signing-key functions; they hold no logic of their own. Each change is recorded in the
audit log as done by ``cli``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import IO, Any

import click
import sqlalchemy.exc
from flask.cli import AppGroup

from .core.contract import SELLER_TIERS
from .core.errors import LicenseChainError
from .serialize import app_json, iso, license_json, parse_timestamp
from .signing import rotate_signing_key
from .state import IssuerState, get_issuer_state
from .store import API_KEY_SCOPES, Store

log = logging.getLogger("licensechain.cli")

AUDIT_ACTOR = "cli"
JSON_OPTION = "as_json"

#: What loading a misconfigured app, reaching a dead store or bad input raises.
_COMMAND_ERRORS = (
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
            click.echo(_dumps({"error": self.code, "message": self.format_message()}))
        else:
            super().show(file)


class CommandUsageError(CommandError):
    """Bad arguments: exit status 2, as click's own usage errors."""

    exit_code = 2


def command_error(exc: Exception, *, as_json: bool) -> CommandError:
    """The one translation of an exception into the command's error."""
    if isinstance(exc, CommandError):
        return exc
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
    """Flask's ``AppGroup`` (each command runs in the app's context) of ``LicenseChainCommand``."""

    command_class = LicenseChainCommand


#: ``flask licensechain``. Flask finds it through the ``flask.commands`` entry point (before
#: the app loads, so load errors are reported like any other), and an issuer app also adds
#: it to its own commands.
licensechain_cli = LicenseChainGroup(
    "licensechain", help="Administer the LicenseChain license server of this app."
)


def _issuer() -> tuple[IssuerState, Store]:
    state = get_issuer_state()
    return state, state.store


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _emit(as_json: bool, data: dict[str, Any], human: str) -> None:
    click.echo(_dumps(data) if as_json else human)


def _audit(store: Store, action: str, target: str, **data: Any) -> None:
    # Best effort, as in the API: the change is committed; a lost audit line must not undo it.
    try:
        store.audit.record(action, actor=AUDIT_ACTOR, target=target, data=data)
    except LicenseChainError as exc:
        log.warning("could not record audit event %s: %s", action, exc.detail or exc)


# -- commands ---------------------------------------------------------------------------


@licensechain_cli.command(
    "init", help="Create the store's tables and the first signing key (idempotent)."
)
def init(as_json: bool) -> None:
    state, store = _issuer()
    store.create_all()
    state.signing_keys.ensure_active(state.settings.signing_key_file)
    state.keyring.reload()
    active = store.signing_keys.active()
    if active is None:  # pragma: no cover - ensure_active guarantees one
        raise click.ClickException("No active signing key after init.")
    _emit(
        as_json,
        {"store": store.backend, "kid": active.kid},
        f"LicenseChain store ready ({store.backend}); active signing key {active.kid}.",
    )


@licensechain_cli.command(
    "create-app", help="Create an app (a product that licenses are sold for)."
)
@click.option("--name", required=True, help="Display name.")
@click.option("--description", default=None, help="Optional description.")
@click.option(
    "--tier",
    type=click.Choice(SELLER_TIERS),
    default="free",
    show_default=True,
    help="Seller tier: sets the tokens' verification type and lifetime.",
)
def create_app(as_json: bool, name: str, description: str | None, tier: str) -> None:
    _, store = _issuer()
    app = store.apps.create(name, description, tier)
    _audit(store, "app.create", app.id, name=app.name, tier=app.tier)
    _emit(as_json, app_json(app), f"Created app {app.name!r}: id {app.id}, tier {app.tier}.")


@licensechain_cli.command("create-license", help="Create a license key for an app.")
@click.option("--app-id", required=True, help="The app the license belongs to.")
@click.option("--plan", default=None, help="Plan name, e.g. pro.")
@click.option(
    "--feature", "features", multiple=True, help="A feature it grants (repeat the option)."
)
@click.option(
    "--expires-at", default=None, help="ISO 8601 date-time (UTC if no offset); default never."
)
@click.option(
    "--max-devices",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Hardware ids that may be bound.",
)
@click.option("--require-hwuid", is_flag=True, help="Verification needs a hardware id.")
@click.option("--email", default=None, help="The licensee's e-mail address.")
@click.option("--issued-to", default=None, help="The licensee's name.")
def create_license(
    as_json: bool,
    app_id: str,
    plan: str | None,
    features: tuple[str, ...],
    expires_at: str | None,
    max_devices: int,
    require_hwuid: bool,
    email: str | None,
    issued_to: str | None,
) -> None:
    _, store = _issuer()
    expiry = None if expires_at is None else parse_timestamp(expires_at, "--expires-at")
    lic = store.licenses.create(
        app_id,
        plan=plan,
        issued_to=issued_to,
        issued_email=email,
        expires_at=expiry,
        features=features,
        max_devices=max_devices,
        require_hwuid=require_hwuid,
    )
    _audit(store, "license.create", lic.id, app_id=app_id)
    until = iso(lic.expires_at) or "never"
    _emit(
        as_json,
        license_json(lic, datetime.now(UTC)),
        f"Created license {lic.key} (id {lic.id}) for app {app_id}; expires: {until}.",
    )


@licensechain_cli.command(
    "create-api-key", help="Create an admin API key. It is shown once: keep it."
)
@click.option("--name", required=True, help="What the key is for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(API_KEY_SCOPES),
    help="A scope it grants (repeat the option); * grants all.",
)
@click.option("--test", "test_key", is_flag=True, help="An lc_test_ key instead of lc_live_.")
def create_api_key(as_json: bool, name: str, scopes: tuple[str, ...], test_key: bool) -> None:
    _, store = _issuer()
    record, plaintext = store.api_keys.create(
        name, scopes, environment="test" if test_key else "live"
    )
    _audit(store, "api_key.create", record.id, scopes=list(record.scopes))
    _emit(
        as_json,
        {"id": record.id, "key": plaintext, "scopes": list(record.scopes)},
        f"Created API key {record.id} with scopes {', '.join(record.scopes)}:\n"
        f"  {plaintext}\n"
        "It is stored only as a hash and cannot be shown again.",
    )


@licensechain_cli.command(
    "rotate-keys", help="Make a new signing key; the old one stays in the JWKS meanwhile."
)
def rotate_keys(as_json: bool) -> None:
    state, store = _issuer()
    result = rotate_signing_key(state)
    _audit(store, "signing_key.rotate", result.kid, previous=result.previous_kid)
    previous_until = iso(result.previous_expires_at)
    human = f"New active signing key {result.kid}."
    if result.previous_kid:
        human += f" {result.previous_kid} stays in the JWKS until {previous_until}."
    _emit(
        as_json,
        {
            "kid": result.kid,
            "previousKid": result.previous_kid,
            "previousKeyExpiresAt": previous_until,
        },
        human,
    )


__all__ = ["licensechain_cli"]
