"""``flask licensechain ...``: set up and administer an issuer from the command line.

    flask --app APP licensechain init
    flask --app APP licensechain create-app --name "My App" --tier pro
    flask --app APP licensechain create-license --app-id app_... --feature export
    flask --app APP licensechain create-api-key --name ci --scope licenses:write
    flask --app APP licensechain api-keys list|show|create|rotate|revoke   (cli_api_keys.py)
    flask --app APP licensechain rotate-keys

Every command takes ``--json`` and then prints exactly one JSON object on stdout (the same
shapes the HTTP API answers with), errors included: ``{"error": <code>, "message": <text>}``
with exit status 1 (2 for a usage error). Without ``--json`` an error is one line on stderr,
never a traceback. Errors raised while the app loads (bad configuration, a store that is
down) are reported the same way. The commands call the service layer
(``flask_licensechain/services/``) with ``cli_actor()``; they hold no logic of their own.
Each change is recorded in the audit log, in its transaction, as done by ``cli`` and the
OS user who ran the command.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from .cli_admin import apps_cli, devices_cli, licenses_cli
from .cli_api_keys import api_keys_cli, create_api_key
from .cli_audit import audit_cli
from .cli_console import users_cli
from .cli_data import register_data_commands
from .cli_db import db_cli
from .cli_webhooks import webhooks_cli
from .command import LicenseChainGroup, cli_actor, emit, issuer
from .core.contract import SELLER_TIERS
from .serialize import app_json, iso, license_json, parse_timestamp
from .services.apps import create_app as create_app_service
from .services.licenses import create_license as create_license_service
from .services.signing_keys import ensure_active_signing_key, rotate_signing_key

#: ``flask licensechain``. Flask finds it through the ``flask.commands`` entry point (before
#: the app loads, so load errors are reported like any other), and an issuer app also adds
#: it to its own commands.
licensechain_cli = LicenseChainGroup(
    "licensechain", help="Administer the LicenseChain license server of this app."
)
licensechain_cli.add_command(db_cli)
licensechain_cli.add_command(apps_cli)
licensechain_cli.add_command(licenses_cli)
licensechain_cli.add_command(devices_cli)
licensechain_cli.add_command(webhooks_cli)
licensechain_cli.add_command(users_cli)
register_data_commands(licensechain_cli)
licensechain_cli.add_command(audit_cli)
licensechain_cli.add_command(api_keys_cli)
licensechain_cli.add_command(create_api_key)


# -- commands ---------------------------------------------------------------------------


@licensechain_cli.command(
    "init", help="Create the store's tables and the first signing key (idempotent)."
)
def init(as_json: bool) -> None:
    state, store = issuer()
    store.upgrade_schema()
    ensure_active_signing_key(store, state.signing_keys, state.settings.signing_key_file)
    state.keyring.reload()
    kid = state.keyring.active_key().kid
    emit(
        as_json,
        {"store": store.backend, "kid": kid},
        f"LicenseChain store ready ({store.backend}); active signing key {kid}.",
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
@click.option(
    "--mode",
    type=click.Choice(("live", "test")),
    default="live",
    show_default=True,
    help="Which API keys act on it (lc_live_ or lc_test_); set for good.",
)
def create_app(as_json: bool, name: str, description: str | None, tier: str, mode: str) -> None:
    state, _ = issuer()
    app = create_app_service(
        state, cli_actor(), name=name, description=description, tier=tier, mode=mode
    )
    emit(as_json, app_json(app), f"Created app {app.name!r}: id {app.id}, tier {app.tier}.")


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
    state, _ = issuer()
    expiry = None if expires_at is None else parse_timestamp(expires_at, "--expires-at")
    lic = create_license_service(
        state,
        cli_actor(),
        app_id=app_id,
        plan=plan,
        issued_to=issued_to,
        issued_email=email,
        expires_at=expiry,
        features=features,
        max_devices=max_devices,
        require_hwuid=require_hwuid,
    )
    until = iso(lic.expires_at) or "never"
    emit(
        as_json,
        license_json(lic, datetime.now(UTC)),
        f"Created license {lic.key} (id {lic.id}) for app {app_id}; expires: {until}.",
    )


@licensechain_cli.command(
    "rotate-keys", help="Make a new signing key; the old one stays in the JWKS meanwhile."
)
def rotate_keys(as_json: bool) -> None:
    state, _ = issuer()
    result = rotate_signing_key(state, cli_actor())
    previous_until = iso(result.previous_expires_at)
    human = f"New active signing key {result.kid}."
    if result.previous_kid:
        human += f" {result.previous_kid} stays in the JWKS until {previous_until}."
    emit(
        as_json,
        {
            "kid": result.kid,
            "previousKid": result.previous_kid,
            "previousKeyExpiresAt": previous_until,
        },
        human,
    )


__all__ = ["licensechain_cli"]
