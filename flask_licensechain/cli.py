"""``flask licensechain ...``: set up and administer an issuer from the command line.

    flask --app APP licensechain init
    flask --app APP licensechain create-app --name "My App" --tier pro
    flask --app APP licensechain create-license --app-id app_... --feature export
    flask --app APP licensechain create-api-key --name ci --scope licenses:write
    flask --app APP licensechain rotate-keys

Every command takes ``--json`` and then prints exactly one JSON object on stdout (the same
shapes the HTTP API answers with). Errors print one line on stderr and exit with status 1,
never a traceback. The commands call the store's repositories and the issuer's functions;
they hold no logic of their own. Each change is recorded in the audit log as done by ``cli``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import sqlalchemy.exc
from flask import current_app
from flask.cli import ScriptInfo

from .cli_db import db_cli
from .core.contract import SELLER_TIERS
from .core.errors import LicenseChainError
from .extension import LicenseChainState, get_state
from .store import API_KEY_SCOPES, Store

log = logging.getLogger("licensechain.cli")

F = TypeVar("F", bound=Callable[..., Any])

AUDIT_ACTOR = "cli"

# A plain click group, not Flask's AppGroup: each command loads the app itself, inside its
# error handling, so a misconfigured or unreachable store is one clear line, not a traceback.
# The group reaches ``flask`` through the ``flask.commands`` entry point (found before the
# app loads) and through the issuer, which adds it to the app's own commands.
licensechain_cli = click.Group(
    "licensechain", help="Administer the LicenseChain license server of this app."
)
licensechain_cli.add_command(db_cli)

#: What loading a misconfigured app or reaching a dead store raises.
_SETUP_ERRORS = (
    LicenseChainError,
    RuntimeError,
    ValueError,
    OSError,
    sqlalchemy.exc.SQLAlchemyError,
)


# -- plumbing ---------------------------------------------------------------------------


def _command(name: str, help_text: str) -> Callable[[F], F]:
    """A ``licensechain`` subcommand with ``--json`` and clean error reporting."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                if current_app:
                    func(*args, **kwargs)
                    return
                app = click.get_current_context().ensure_object(ScriptInfo).load_app()
                with app.app_context():
                    func(*args, **kwargs)
            except click.ClickException:
                raise
            except _SETUP_ERRORS as exc:
                log.debug("licensechain %s failed", name, exc_info=True)
                raise click.ClickException(_error_text(exc)) from None

        option = click.option(
            "--json", "as_json", is_flag=True, help="Print exactly one JSON object."
        )
        licensechain_cli.command(name, help=help_text)(option(run))
        return func

    return decorate


def _error_text(exc: Exception) -> str:
    if not isinstance(exc, LicenseChainError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # ``description`` is written for people ("App not found."). A server-side failure (store
    # down, bad key material) also shows the first line of its cause: the operator needs it.
    if exc.status_code >= 500 and exc.detail:
        return f"{exc.description} {exc.detail.splitlines()[0][:300]}"
    return exc.description


def _issuer() -> tuple[LicenseChainState, Store]:
    state = get_state()
    if state.store is None:
        raise click.ClickException(
            "This app's LicenseChain is in integrator mode (LICENSECHAIN_JWKS_URL or "
            "LICENSECHAIN_JWKS_FILE is set): it has no store to administer."
        )
    return state, state.store


def _emit(as_json: bool, data: dict[str, Any], human: str) -> None:
    if as_json:
        click.echo(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    else:
        click.echo(human)


def _audit(store: Store, action: str, target: str, **data: Any) -> None:
    # Best effort, as in the API: the change is committed; a lost audit line must not undo it.
    try:
        store.audit.record(action, actor=AUDIT_ACTOR, target=target, data=data)
    except LicenseChainError as exc:
        log.warning("could not record audit event %s: %s", action, exc.detail or exc)


# -- commands ---------------------------------------------------------------------------


@_command("init", "Create the store's tables and the first signing key (idempotent).")
def init(as_json: bool) -> None:
    from .issuer import signing_keys_of

    state, store = _issuer()
    store.upgrade_schema()
    signing_keys_of(state).ensure_active(state.settings.signing_key_file)
    if state.keyring is not None:
        state.keyring.reload()
    active = store.signing_keys.active()
    if active is None:  # pragma: no cover - ensure_active guarantees one
        raise click.ClickException("No active signing key after init.")
    _emit(
        as_json,
        {"store": store.backend, "kid": active.kid},
        f"LicenseChain store ready ({store.backend}); active signing key {active.kid}.",
    )


@_command("create-app", "Create an app (a product that licenses are sold for).")
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
    from .api.serialize import app_json

    _, store = _issuer()
    app = store.apps.create(name, description, tier)
    _audit(store, "app.create", app.id, name=app.name, tier=app.tier)
    _emit(as_json, app_json(app), f"Created app {app.name!r}: id {app.id}, tier {app.tier}.")


@_command("create-license", "Create a license key for an app.")
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
    from .api.body import parse_timestamp
    from .api.serialize import iso, license_json

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


@_command("create-api-key", "Create an admin API key. It is shown once: keep it.")
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


@_command("rotate-keys", "Make a new signing key; the old one stays in the JWKS meanwhile.")
def rotate_keys(as_json: bool) -> None:
    from .api.serialize import iso
    from .issuer import rotate_signing_key

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
