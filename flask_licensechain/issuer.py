"""The issuer side of ``LicenseChain``: store, sealing key, signing key ring, limiter, API, CLI.

``init_issuer`` runs once per app in ``init_app``. After it, the request path reads only
in-memory state: the key ring (reloaded from the store every ``key_refresh_interval``
seconds so that a rotation done by one worker reaches the others), the settings, the limiter.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import secrets
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from .api import bp as api_blueprint
from .api import root_bp as root_blueprint
from .api.cors import OriginAllowList
from .api.docs import check_docs_setting, register_docs
from .api.http import install_json_errors
from .api.ratelimit import build_public_rate_limits
from .api.urls import BaseUrls
from .cli import licensechain_cli
from .config import Settings
from .core.keyring import KeyRing
from .core.private_files import make_private_dirs, warn_if_shared
from .core.sealing import (
    LEGACY_KEY_ID,
    Sealer,
    new_encryption_key_text,
    parse_encryption_key,
)
from .core.verifier import TokenVerifier
from .maintenance import run_maintenance
from .revocation import build_denylist
from .services.signing_keys import ensure_active_signing_key
from .signing import IssuerConfigurationError, SigningKeys
from .state import IssuerState
from .store import Store, open_store
from .store.audit import AuditKeys
from .store.sealed import key_ids_in_use

try:  # the console extra (flask-wtf, argon2, pyotp...) is optional
    from .console import init_console
except ImportError:  # pragma: no cover - exercised without the extra
    init_console = None  # type: ignore[assignment]
from .webhooks.runtime import WebhookRuntime, WebhookSettings
from .webhooks.worker import BackgroundWorker

log = logging.getLogger("licensechain.issuer")

DB_FILENAME = "licensechain.db"
KEY_FILENAME = "licensechain.key"


# -- the store and the sealing key -----------------------------------------------------


def default_database_url(app: Flask) -> str:
    """SQLite ``licensechain.db`` in ``app.instance_path``, which is created if missing
    (``OSError`` when it cannot be)."""
    make_private_dirs(Path(app.instance_path))
    return "sqlite:///" + os.path.join(app.instance_path, DB_FILENAME)


def encryption_keyring(
    app: Flask, settings: Settings, database_url: str
) -> list[tuple[str, bytes]]:
    """The keyring sealing secrets at rest and keying the audit chain, ``[(key id, 32-byte
    key), ...]`` with the sealing key first: ``LICENSECHAIN_ENCRYPTION_KEYS``, or the one key
    of ``LICENSECHAIN_ENCRYPTION_KEY`` (id ``default``), or (embedded SQLite only) the key of
    a 0600 file beside the database (id ``default``).

    :raises IssuerConfigurationError: both settings, or neither with a non-SQLite store.
    :raises KeyMaterialError: a malformed ``LICENSECHAIN_ENCRYPTION_KEY``.
    """
    if settings.encryption_keys and settings.encryption_key:
        raise IssuerConfigurationError(
            "set LICENSECHAIN_ENCRYPTION_KEYS or LICENSECHAIN_ENCRYPTION_KEY, not both "
            f"(the one key is the ring '{LEGACY_KEY_ID}:<key>': list it in "
            "LICENSECHAIN_ENCRYPTION_KEYS under that id)"
        )
    if settings.encryption_keys:
        return list(settings.encryption_keys)
    return [(LEGACY_KEY_ID, resolve_encryption_key(app, settings, database_url))]


def check_sealed_key_ids(store: Store, sealer: Sealer) -> None:
    """Refuse a store holding secrets sealed under a key id the ring lacks: the issuer would
    half-work (a key it cannot sign with, webhooks it cannot sign).

    :raises IssuerConfigurationError: naming the missing ids and where they are used.
    """
    missing = {
        key_id: places
        for key_id, places in key_ids_in_use(store.database).items()
        if key_id not in sealer.key_ids
    }
    if missing:
        listed = "; ".join(f"{k!r} ({', '.join(v)})" for k, v in sorted(missing.items()))
        raise IssuerConfigurationError(
            f"the store holds secrets sealed under encryption key id(s) {listed}, which "
            f"the configured keyring ({', '.join(sealer.key_ids)}) does not have. Add them "
            "to LICENSECHAIN_ENCRYPTION_KEYS as <id>:<key> (after the sealing key), then "
            "run `flask licensechain rotate-encryption-key` before removing any key."
        )


def resolve_encryption_key(app: Flask, settings: Settings, database_url: str) -> bytes:
    """``LICENSECHAIN_ENCRYPTION_KEY``, or (embedded SQLite only) a 0600 key file beside the db."""
    if settings.encryption_key:
        return parse_encryption_key(settings.encryption_key)
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise IssuerConfigurationError(
            "LICENSECHAIN_ENCRYPTION_KEY is required with a "
            f"{url.get_backend_name()} store: signing keys are stored encrypted and the key "
            "must not live beside a shared database. Generate one with: python -c "
            '"import secrets, base64; '
            'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())" '
            "(or list keys by id in LICENSECHAIN_ENCRYPTION_KEYS)"
        )
    if not (app.debug or app.testing):
        log.warning(
            "LicenseChain is using its embedded default: the key sealing the signing keys is "
            "a file beside the SQLite database. Set LICENSECHAIN_ENCRYPTION_KEY (and "
            "LICENSECHAIN_DATABASE_URL) in production."
        )
    if url.database in (None, "", ":memory:"):
        return os.urandom(32)  # the database dies with the process; so may its key
    key_path = Path(url.database).resolve().parent / KEY_FILENAME
    return parse_encryption_key(read_or_create_key_file(key_path))


def read_or_create_key_file(path: Path) -> str:
    """The key in ``path``, created (mode 0600) on first use; safe when workers race."""
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    make_private_dirs(path.parent)
    # Write a private temp file, then link it into place: the link is atomic and fails when
    # another process won, so nobody ever reads a half-written key.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(new_encryption_key_text() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file(path)


def _read_key_file(path: Path) -> str:
    warn_if_shared(path)
    return path.read_text(encoding="ascii").strip()


# -- wiring ----------------------------------------------------------------------------


def resolve_issuer(app: Flask, settings: Settings) -> Settings:
    """Settings with a fixed ``issuer``: ``LICENSECHAIN_ISSUER``, else from ``SERVER_NAME``.

    Without either, ``iss`` would follow each request's Host header: allowed only in
    debug and testing.

    :raises IssuerConfigurationError: neither is set outside debug and testing.
    """
    if settings.issuer:
        return settings
    server_name = app.config.get("SERVER_NAME")
    if server_name:
        scheme = app.config.get("PREFERRED_URL_SCHEME") or "http"
        root = (app.config.get("APPLICATION_ROOT") or "/").rstrip("/")
        issuer = f"{scheme}://{server_name}{root}{settings.url_prefix.rstrip('/')}"
        return dataclasses.replace(settings, issuer=issuer)
    if not (app.debug or app.testing):
        raise IssuerConfigurationError(
            "set LICENSECHAIN_ISSUER (the API's public base URL, e.g. "
            "https://licenses.example.com/v1) or Flask's SERVER_NAME: otherwise each "
            "request's Host header would choose the 'iss' of the tokens it gets"
        )
    return settings


def init_issuer(app: Flask, settings: Settings) -> IssuerState:
    """Open the store, make sure a signing key is active, load the key ring, and register
    the /v1 blueprint (unless ``LICENSECHAIN_REGISTER_BLUEPRINT`` is false), ``GET /health``
    outside the prefix, the app-wide JSON errors (``LICENSECHAIN_JSON_ERRORS``) and the CLI.

    Raises ``IssuerConfigurationError`` for an unsafe or unreadable configuration,
    ``Unavailable`` when the store cannot be reached, ``KeyMaterialError`` when a stored
    key cannot be unsealed (wrong ``LICENSECHAIN_ENCRYPTION_KEY``).
    """
    settings = resolve_issuer(app, settings)
    check_docs_setting(settings)
    database_url = settings.database_url or default_database_url(app)
    encryption_keys = encryption_keyring(app, settings, database_url)
    sealer = Sealer(encryption_keys)
    store = open_store(database_url)
    # The audit chain's MAC keys come from the encryption keyring (store/audit.py).
    store.audit.use_keys(AuditKeys.derive(encryption_keys))
    store.prepare_schema()
    check_sealed_key_ids(store, sealer)
    # The store records every revocation; the denylist follows it (and Redis, when set).
    denylist = build_denylist(settings, source=store.revocations)

    signing_keys = SigningKeys(store, sealer, settings)
    ensure_active_signing_key(store, signing_keys, settings.signing_key_file)
    keyring = KeyRing(signing_keys.load, refresh_interval=settings.key_refresh_interval)
    keyring.reload()
    keyring.active_key()  # fail at start-up, not on the first request

    # The issuer serves many apps: its verifier checks no audience.
    verifier = TokenVerifier(
        keyring,
        issuer=settings.issuer,
        audience=None,
        leeway=settings.leeway,
        max_token_bytes=settings.max_token_bytes,
        denylist=denylist,
        cache_size=settings.verified_cache_size,
    )
    state = IssuerState(
        settings=settings,
        verifier=verifier,
        denylist=denylist,
        key_source=keyring,
        store=store,
        keyring=keyring,
        limiter=build_public_rate_limits(app, settings),
        signing_keys=signing_keys,
        urls=BaseUrls(settings.issuer, settings.url_prefix),
        cors_origins=OriginAllowList(store.apps.all_allowed_origins),
        sealer=sealer,
    )
    _init_webhooks(app, state)
    if settings.register_blueprint:
        has_root_health = any(rule.rule == "/health" for rule in app.url_map.iter_rules())
        app.register_blueprint(api_blueprint, url_prefix=settings.url_prefix)
        if settings.url_prefix.strip("/") and not has_root_health:
            app.register_blueprint(root_blueprint)
        if settings.json_errors:
            install_json_errors(app)
        register_docs(app, settings)
    # Without the console extra, the settings check (core/options.require_driver) has
    # already refused LICENSECHAIN_CONSOLE.
    if settings.console and init_console is not None:
        init_console(app, state)
    if licensechain_cli.name not in app.cli.commands:
        app.cli.add_command(licensechain_cli)
    return state


def _init_webhooks(app: Flask, state: IssuerState) -> None:
    """The webhook outbox joins every unit of work (after the audit log); with
    ``LICENSECHAIN_WEBHOOKS_BACKGROUND`` a worker thread starts with the first request."""
    settings = WebhookSettings.from_settings(state.settings)
    runtime = WebhookRuntime(state.store, state.sealer, settings)
    runtime.install()
    state.webhooks = runtime
    if state.settings.webhooks_background:
        background = BackgroundWorker(
            runtime, maintenance=functools.partial(run_maintenance, state)
        )
        state.webhook_worker = background
        app.before_request(background.ensure_started)
        state.store.changes.add_committed_listener(background.wake_for)
