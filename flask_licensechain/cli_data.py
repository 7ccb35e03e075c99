"""``flask licensechain ...`` data protection commands: the keys at rest, backups, retention.

    flask --app APP licensechain rotate-encryption-key   re-seal every secret under the first key
    flask --app APP licensechain backup FILE [--method auto|native|logical]
    flask --app APP licensechain restore FILE [--replace]
    flask --app APP licensechain maintenance run         retention and key clean-up (cron: daily)
    flask --app APP licensechain customers export --email E [--app-id A]
    flask --app APP licensechain customers erase --email E [--app-id A] --yes

Each takes ``--json`` (one JSON object on stdout, errors included) like every
``flask licensechain`` command (``flask_licensechain.command``); progress goes to stderr.
``register_data_commands(group)`` adds them to ``flask licensechain``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .command import CommandFailure, LicenseChainGroup, cli_actor, dumps, emit, find_app, issuer
from .maintenance import run_maintenance
from .serialize import iso
from .services.customers import erase_customer, export_customer
from .services.encryption_keys import rotate_encryption_key
from .state import IssuerState
from .store.backup import METHODS, BackupError, backup, restore
from .store.customers import WHOLE_STORE, Reach
from .store.sealed import key_ids_in_use

#: Holds the commands until ``register_data_commands`` adds them to ``flask licensechain``.
data_cli = LicenseChainGroup("data", help="Data protection commands.")


def _progress(where: str, done: int, total: int) -> None:
    click.echo(f"{where}: {done}/{total} re-sealed", err=True)


@data_cli.command(
    "rotate-encryption-key",
    help="Re-seal every secret at rest (signing keys, webhook and TOTP secrets) under the "
    "first key of LICENSECHAIN_ENCRYPTION_KEYS, in one transaction. Afterwards the other "
    "keys can be removed from the list.",
)
def rotate_encryption_key_command(as_json: bool) -> None:
    state, _ = issuer()
    report = rotate_encryption_key(state, cli_actor(), progress=_progress)
    removable = list(report.removable)
    human = f"Every sealed secret is now under encryption key {report.key_id!r} " + (
        f"({report.total} re-sealed)."
    )
    if removable:
        human += (
            f" No stored secret needs key(s) {', '.join(removable)} any more: remove them "
            "from LICENSECHAIN_ENCRYPTION_KEYS (keep a copy offline while backups made "
            "under them may be restored)."
        )
    if report.audit_key_ids:
        human += (
            f" Keep key(s) {', '.join(report.audit_key_ids)}: audit events are MAC'd under "
            "them (`flask licensechain audit verify` needs them until `audit prune` removes "
            "those events)."
        )
    emit(
        as_json,
        {
            "keyId": report.key_id,
            "resealed": report.resealed,
            "total": report.total,
            "removableKeyIds": removable,
            "auditKeyIds": list(report.audit_key_ids),
        },
        human,
    )


@data_cli.command(
    "backup",
    help="Write an encrypted backup of the store to FILE (SQLite: online backup API; "
    "PostgreSQL: pg_dump when installed, else a logical export). Safe while serving.",
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="auto",
    show_default=True,
    help="native: the SQLite backup API or pg_dump; logical: rows through SQLAlchemy.",
)
def backup_command(as_json: bool, file: Path, method: str) -> None:
    state, store = issuer()
    info = backup(store.database, state.sealer, file, method=method)
    data = {"file": str(file), **info.as_dict()}
    emit(
        as_json,
        data,
        f"Backed up the {info.backend} store (schema {info.revision}) to {file} with "
        f"{info.method}, encrypted under key {info.key_id!r}; sha256 {info.sha256}.",
    )


@data_cli.command(
    "restore",
    help="Restore an encrypted backup FILE into this app's store and migrate it to this "
    "code's schema, in one transaction (a failure changes nothing), touching only the "
    "lc_* tables. Refuses a damaged file or a newer schema. Stop the servers first.",
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the store's LicenseChain tables even if it is in use (apps, licenses, "
    "API keys, webhook endpoints, console users...).",
)
def restore_command(as_json: bool, file: Path, replace: bool) -> None:
    state, store = issuer()
    try:
        result = restore(store.database, state.sealer, file, replace=replace)
    except BackupError as exc:
        raise CommandFailure(exc.code, exc.description) from exc
    missing = sorted(set(key_ids_in_use(store.database)) - set(state.sealer.key_ids))
    if missing:
        raise CommandFailure(
            "key_error",
            f"restored, but the store's secrets are sealed under encryption key id(s) "
            f"{', '.join(missing)}, which are not configured: add them to "
            "LICENSECHAIN_ENCRYPTION_KEYS before starting the servers",
        )
    info = result.info
    data = {
        "file": str(file),
        "method": info.method,
        "backend": info.backend,
        "createdAt": info.created_at,
        "backupRevision": info.revision,
        "migratedFrom": result.migrated_from,
        "revision": result.revision,
    }
    human = f"Restored {file} ({info.method} of {info.created_at})"
    if result.migrated_from:
        human += f", migrated from schema {result.migrated_from} to {result.revision}"
    emit(as_json, data, human + ". Start the servers.")


maintenance_cli = LicenseChainGroup(
    "maintenance", help="Periodic jobs: run `maintenance run` daily (cron, systemd timer)."
)
data_cli.add_command(maintenance_cli)


@maintenance_cli.command(
    "run",
    help="Truncate client IPs and erase user agents older than LICENSECHAIN_RETENTION_DAYS_IP "
    "days; retire signing keys whose last token has expired. Idempotent.",
)
def maintenance_run(as_json: bool) -> None:
    state, _ = issuer()
    report = run_maintenance(state)
    reduced = sum(report.retention.values())
    emit(
        as_json,
        {
            "retention": report.retention,
            "cutoff": iso(report.cutoff),
            "retentionDaysIp": state.settings.retention_days_ip,
            "retiredSigningKeys": report.retired_keys,
        },
        f"Retention: {reduced} IP or user-agent value(s) older than {iso(report.cutoff)} "
        f"reduced; {report.retired_keys} signing key(s) retired.",
    )


customers_cli = LicenseChainGroup(
    "customers", help="A customer's records: export them, erase their personal data."
)
data_cli.add_command(customers_cli)


def _reach(state: IssuerState, app_id: str | None) -> Reach:
    """The whole store, or the one app ``--app-id`` names (``find_app``)."""
    if app_id is None:
        return WHOLE_STORE
    return Reach((find_app(state, app_id).id,), store_wide=False)


@customers_cli.command(
    "export", help="Print every record about the customer as one versioned JSON document."
)
@click.option("--email", required=True, help="The e-mail the licenses were issued to.")
@click.option("--app-id", default=None, help="Only the licenses of this app.")
def customers_export(as_json: bool, email: str, app_id: str | None) -> None:
    state, _ = issuer()
    document = export_customer(state, cli_actor(), email=email, reach=_reach(state, app_id))
    click.echo(dumps(document) if as_json else json.dumps(document, indent=2, ensure_ascii=False))


@customers_cli.command(
    "erase",
    help="Erase the customer's personal data (e-mail, name, IPs, user agents, hardware ids, "
    "the metadata keys of LICENSECHAIN_PERSONAL_METADATA_KEYS, the same in audit events and "
    "webhook payloads); license facts are kept. Cannot be undone.",
)
@click.option("--email", required=True, help="The e-mail the licenses were issued to.")
@click.option("--app-id", default=None, help="Only the licenses of this app.")
@click.option("--yes", "confirmed", is_flag=True, help="Confirm: erasure cannot be undone.")
def customers_erase(as_json: bool, email: str, app_id: str | None, confirmed: bool) -> None:
    if not confirmed:
        raise click.UsageError("erasure cannot be undone: pass --yes")
    state, _ = issuer()
    result = erase_customer(state, cli_actor(), email=email, reach=_reach(state, app_id))
    emit(
        as_json,
        result,
        f"Erased: {result['licenses']} license(s) now carry the pseudonym "
        f"{result['pseudonym']}; {result['devices']} hardware id(s) pseudonymised; "
        f"{result['personalRows']} IP/user-agent row(s), {result['auditEvents']} audit "
        f"event(s) and {result['webhookDeliveries']} webhook delivery(ies) cleaned.",
    )


def register_data_commands(group: click.Group) -> None:
    """Add the data protection commands to ``group`` (``flask licensechain``)."""
    for command in data_cli.commands.values():
        group.add_command(command)


__all__ = ["register_data_commands"]
