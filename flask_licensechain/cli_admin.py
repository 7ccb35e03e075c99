"""``flask licensechain apps|licenses|devices ...``: administer apps and licenses from a shell.

    flask --app APP licensechain apps list [--page N] [--limit N]
    flask --app APP licensechain apps show APP_ID
    flask --app APP licensechain licenses list [--app ID] [--status S] [--email E] [--page N]
    flask --app APP licensechain licenses show KEY-OR-ID
    flask --app APP licensechain licenses revoke KEY-OR-ID [--reason TEXT]
    flask --app APP licensechain licenses suspend|activate KEY-OR-ID
    flask --app APP licensechain licenses extend KEY-OR-ID (--expires-at DATE | --perpetual) [--yes]
    flask --app APP licensechain devices list KEY-OR-ID
    flask --app APP licensechain devices release KEY-OR-ID HWUID

Under ``--json`` each prints the API's object for the same thing (an app, a license, a page
``{"apps"|"licenses", "total", "page", "limit"}``), errors included, as every
``licensechain`` command does (``command.py``). A "not found" names what was not found and
the command that lists the candidates.

State changes call the service layer, as the API's views do (``services/licenses.py``:
``change_status``, ``extend_license``, ``release_device``), with the ``cli`` actor: the same
409 rules, revocation records and denylist announcements (gates refuse a revoked license's
tokens at once), and the audit event in the same transaction. An expiry in the past expires
the license at once: the command asks first, or needs ``--yes`` (always under ``--json``,
where nobody can be asked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from . import field_limits as limits
from .command import CLI, CommandFailure, LicenseChainGroup, cli_actor, emit, find_app, issuer
from .core.contract import LICENSE_STATUSES
from .core.errors import NotFound
from .serialize import app_json, iso, license_json, parse_timestamp
from .services import licenses as service
from .state import IssuerState
from .store import LicenseRecord

apps_cli = LicenseChainGroup("apps", help="List and show apps.")
licenses_cli = LicenseChainGroup(
    "licenses", help="List, show, revoke, suspend, activate and extend licenses."
)
devices_cli = LicenseChainGroup("devices", help="List and release a license's bound devices.")

_PAGE = click.option(
    "--page",
    type=click.IntRange(1, limits.PAGE),
    default=1,
    show_default=True,
    help="Which page of --limit items to show.",
)


F = TypeVar("F", bound=Callable[..., Any])


def _limit(default: int) -> Callable[[F], F]:
    return click.option(
        "--limit",
        type=click.IntRange(1, limits.PAGE_SIZE),
        default=default,
        show_default=True,
        help="Items per page.",
    )


# -- lookups with errors that say how to find the thing ---------------------------------


def _license(state: IssuerState, ref: str) -> LicenseRecord:
    lic = state.store.licenses.get_by_id_or_key(ref)
    if lic is None:
        raise CommandFailure(
            "not_found",
            f"License {ref} not found; `{CLI} licenses list` shows the licenses "
            "(filters: --app, --status, --email).",
        )
    return lic


# -- human output ------------------------------------------------------------------------


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _page_footer(shown: int, total: int, page: int, size: int) -> str:
    if total == 0:
        return "none"
    first = (page - 1) * size + 1
    if shown == 0:
        return f"page {page} is past the end ({total} in all)"
    return f"{first}-{first + shown - 1} of {total}"


def _license_text(lic: dict[str, Any]) -> str:
    devices = ", ".join(d["hwuid"] for d in lic["devices"]) or "none"
    lines = [
        f"License {lic['key']} (id {lic['id']}) of app {lic['appId']}",
        f"  status       {lic['status']}",
        f"  plan         {lic['plan'] or '-'}",
        f"  features     {', '.join(lic['features']) or '-'}",
        f"  expires      {lic['expiresAt'] or 'never'}",
        f"  issued to    {lic['issuedTo'] or '-'} <{lic['issuedEmail'] or '-'}>",
        f"  devices      {len(lic['devices'])} of {lic['maxDevices']}: {devices}",
    ]
    return "\n".join(lines)


# -- apps ----------------------------------------------------------------------------------


@apps_cli.command("list", help="List the apps, oldest first.")
@_PAGE
@_limit(limits.PAGE_SIZE)
def apps_list(as_json: bool, page: int, limit: int) -> None:
    _, store = issuer()
    apps = store.apps.list(page=page, limit=limit)
    total = store.apps.count()
    data = {"apps": [app_json(a) for a in apps], "total": total, "page": page, "limit": limit}
    rows = [("ID", "NAME", "TIER", "CREATED")]
    rows += [(a.id, a.name, a.tier, iso(a.created_at) or "") for a in apps]
    footer = _page_footer(len(apps), total, page, limit)
    emit(as_json, data, (_table(rows) + "\n" if apps else "") + f"Apps: {footer}.")


@apps_cli.command("show", help="Show one app.")
@click.argument("app_id")
def apps_show(as_json: bool, app_id: str) -> None:
    state, _ = issuer()
    data = app_json(find_app(state, app_id))
    human = "\n".join(f"{name:<18}{_text(value)}" for name, value in data.items())
    emit(as_json, data, human)


# -- licenses --------------------------------------------------------------------------------


@licenses_cli.command("list", help="List licenses, newest first.")
@click.option("--app", "app_id", default=None, help="Only this app's licenses.")
@click.option(
    "--status",
    type=click.Choice(LICENSE_STATUSES, case_sensitive=False),
    default=None,
    help="Only licenses in this status (EXPIRED: past their expiry).",
)
@click.option("--email", default=None, help="Only licenses issued to this e-mail (any case).")
@_PAGE
@_limit(limits.DEFAULT_PAGE_SIZE)
def licenses_list(
    as_json: bool,
    app_id: str | None,
    status: str | None,
    email: str | None,
    page: int,
    limit: int,
) -> None:
    state, store = issuer()
    if app_id is not None:
        find_app(state, app_id)
    now = datetime.now(UTC)
    records, total = store.licenses.list(
        app_id=app_id,
        status=status.upper() if status else None,
        email=email,
        page=page,
        limit=limit,
        now=now,
    )
    data = {
        "licenses": [license_json(lic, now) for lic in records],
        "total": total,
        "page": page,
        "limit": limit,
    }
    rows = [("KEY", "ID", "APP", "STATUS", "EXPIRES", "EMAIL")]
    rows += [
        (
            lic.key,
            lic.id,
            lic.app_id,
            lic.effective_status(now),
            iso(lic.expires_at) or "never",
            lic.issued_email or "",
        )
        for lic in records
    ]
    footer = _page_footer(len(records), total, page, limit)
    emit(as_json, data, (_table(rows) + "\n" if records else "") + f"Licenses: {footer}.")


@licenses_cli.command("show", help="Show one license, by its id or its key.")
@click.argument("ref", metavar="KEY-OR-ID")
def licenses_show(as_json: bool, ref: str) -> None:
    state, _ = issuer()
    data = license_json(_license(state, ref), datetime.now(UTC))
    emit(as_json, data, _license_text(data))


def _changed(as_json: bool, lic: LicenseRecord, what: str) -> None:
    data = license_json(lic, datetime.now(UTC))
    emit(as_json, data, f"License {lic.key} (id {lic.id}) {what}; status {data['status']}.")


@licenses_cli.command("revoke", help="Revoke for good; its outstanding tokens are refused at once.")
@click.argument("ref", metavar="KEY-OR-ID")
@click.option("--reason", default=None, help="Why (kept in the audit log).")
def licenses_revoke(as_json: bool, ref: str, reason: str | None) -> None:
    state, _ = issuer()
    lic = _license(state, ref)
    revoked = service.change_status(state, cli_actor(), lic.id, "REVOKED", reason=reason)
    _changed(as_json, revoked, "revoked")


@licenses_cli.command(
    "suspend", help="Suspend (reversible); its outstanding tokens are refused at once."
)
@click.argument("ref", metavar="KEY-OR-ID")
def licenses_suspend(as_json: bool, ref: str) -> None:
    state, _ = issuer()
    lic = service.change_status(state, cli_actor(), _license(state, ref).id, "SUSPENDED")
    _changed(as_json, lic, "suspended")


@licenses_cli.command("activate", help="Lift a suspension (a revoked license stays revoked).")
@click.argument("ref", metavar="KEY-OR-ID")
def licenses_activate(as_json: bool, ref: str) -> None:
    state, _ = issuer()
    lic = service.change_status(state, cli_actor(), _license(state, ref).id, "ACTIVE")
    _changed(as_json, lic, "activated")


@licenses_cli.command(
    "extend", help="Set the expiry; a date in the past asks first (or give --yes)."
)
@click.argument("ref", metavar="KEY-OR-ID")
@click.option("--expires-at", default=None, help="ISO 8601 date-time (UTC if no offset).")
@click.option("--perpetual", is_flag=True, help="No expiry.")
@click.option("--yes", "-y", "assume_yes", is_flag=True, help="Do not ask about a past date.")
def licenses_extend(
    as_json: bool, ref: str, expires_at: str | None, perpetual: bool, assume_yes: bool
) -> None:
    if (expires_at is None) == (not perpetual):
        raise click.UsageError("give exactly one of --expires-at DATE and --perpetual")
    expiry = None if expires_at is None else parse_timestamp(expires_at, "--expires-at")
    state, _ = issuer()
    lic = _license(state, ref)
    if expiry is not None and expiry <= datetime.now(UTC) and not assume_yes:
        _confirm_past_expiry(as_json, lic, expiry)
    updated = service.extend_license(state, cli_actor(), lic.id, expires_at=expiry)
    _changed(as_json, updated, f"now expires {iso(expiry) or 'never'}")


def _confirm_past_expiry(as_json: bool, lic: LicenseRecord, expiry: datetime) -> None:
    question = (
        f"{iso(expiry)} is in the past: license {lic.key} would expire at once and its "
        "tokens be refused."
    )
    if as_json:  # stdout carries one JSON object: nobody can be asked
        raise CommandFailure("confirmation_required", f"{question} Give --yes to do it.")
    if not click.confirm(f"{question} Continue?", default=False, err=True):
        raise CommandFailure("aborted", f"License {lic.key} not changed.")


# -- devices -----------------------------------------------------------------------------


@devices_cli.command("list", help="List a license's bound devices.")
@click.argument("ref", metavar="KEY-OR-ID")
def devices_list(as_json: bool, ref: str) -> None:
    state, _ = issuer()
    lic = license_json(_license(state, ref), datetime.now(UTC))
    data = {"licenseId": lic["id"], "maxDevices": lic["maxDevices"], "devices": lic["devices"]}
    rows = [("HWUID", "BOUND", "LAST SEEN")]
    rows += [(d["hwuid"], d["boundAt"] or "", d["lastSeenAt"] or "") for d in lic["devices"]]
    header = f"License {lic['key']}: {len(lic['devices'])} of {lic['maxDevices']} devices bound."
    emit(as_json, data, header + ("\n" + _table(rows) if lic["devices"] else ""))


@devices_cli.command("release", help="Unbind a hardware id; its tokens are refused at once.")
@click.argument("ref", metavar="KEY-OR-ID")
@click.argument("hwuid")
def devices_release(as_json: bool, ref: str, hwuid: str) -> None:
    state, _ = issuer()
    lic = _license(state, ref)
    try:
        released = service.release_device(state, cli_actor(), lic.id, hwuid=hwuid)
    except NotFound:
        raise CommandFailure(
            "not_found",
            f"Device {hwuid} is not bound to license {ref}; "
            f"`{CLI} devices list {ref}` shows its devices.",
        ) from None
    _changed(as_json, released, f"released device {hwuid}")


__all__ = ["apps_cli", "devices_cli", "licenses_cli"]
