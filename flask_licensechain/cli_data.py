"""``flask licensechain ...`` data protection commands: the keys at rest, backups, retention.

    flask --app APP licensechain rotate-encryption-key   re-seal every secret under the first key

Each takes ``--json`` (one JSON object on stdout, errors included) like every
``flask licensechain`` command (``flask_licensechain.command``); progress goes to stderr.
``register_data_commands(group)`` adds them to ``flask licensechain``.
"""

from __future__ import annotations

import click

from .command import LicenseChainGroup, audit, emit, issuer
from .store.sealed import reseal_all

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
def rotate_encryption_key(as_json: bool) -> None:
    state, store = issuer()
    report = reseal_all(store.database, state.sealer, progress=_progress)
    audit(store, "encryption_key.rotate", report.key_id, resealed=report.resealed)
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
    emit(
        as_json,
        {
            "keyId": report.key_id,
            "resealed": report.resealed,
            "total": report.total,
            "removableKeyIds": removable,
        },
        human,
    )


def register_data_commands(group: click.Group) -> None:
    """Add the data protection commands to ``group`` (``flask licensechain``)."""
    for command in data_cli.commands.values():
        group.add_command(command)


__all__ = ["register_data_commands"]
