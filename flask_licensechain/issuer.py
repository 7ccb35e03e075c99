"""The issuer side of ``LicenseChain``: store, sealing key, signing key ring, limiter, API, CLI.

``init_issuer`` runs once per app in ``init_app``. After it, the request path reads only
in-memory state: the key ring (reloaded from the store every ``key_refresh_interval``
seconds so that a rotation done by one worker reaches the others), the settings, the limiter.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from .config import Settings
from .core.contract import LONGEST_TTL, clamp_leeway
from .core.errors import Conflict
from .core.keyring import KeyRing, RingKey
from .core.keys import (
    KeyMaterialError,
    SigningKey,
    load_private_pem,
    new_encryption_key_text,
    parse_encryption_key,
    seal_private_key,
    thumbprint,
    unseal_private_key,
)
from .core.private_files import make_private_dirs, warn_if_shared
from .core.verifier import TokenVerifier
from .store import SigningKeyRecord, Store, open_store
from .store.signing_keys import ACTIVE

if TYPE_CHECKING:
    from .extension import LicenseChainState

log = logging.getLogger("licensechain.issuer")

DB_FILENAME = "licensechain.db"
KEY_FILENAME = "licensechain.key"
ISSUER_EXTRA = "issuer"


class IssuerConfigurationError(RuntimeError):
    """The issuer cannot start safely with this configuration."""


# -- the store and the sealing key -----------------------------------------------------


def default_database_url(app: Flask) -> str:
    make_private_dirs(Path(app.instance_path))
    return "sqlite:///" + os.path.join(app.instance_path, DB_FILENAME)


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
            'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
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


# -- signing keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationResult:
    kid: str
    previous_kid: str | None
    previous_expires_at: datetime | None


class SigningKeys:
    """Loads the key ring from the store and creates, imports and rotates signing keys.

    Public keys and the unsealed active key are cached by ``kid``: a ring reload costs one
    query and no RSA or AES work unless a key is new.
    """

    def __init__(self, store: Store, sealing_key: bytes, settings: Settings) -> None:
        self._store = store
        self._sealing_key = sealing_key
        self._key_size = settings.key_size
        # A rotated-out key must verify every token it signed: the longest TTL, the verifiers'
        # leeway, and the time other workers may keep signing with it before they reload.
        self.retire_after = timedelta(
            seconds=LONGEST_TTL + clamp_leeway(settings.leeway) + settings.key_refresh_interval
        )
        self._public: dict[str, rsa.RSAPublicKey] = {}
        self._private: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigningKeys(kids={sorted(self._public)!r})"

    # KeyRing loader
    def load(self) -> list[RingKey]:
        records = self._store.signing_keys.trusted(datetime.now(UTC))
        with self._lock:
            ring = [self._ring_key(record) for record in records]
            live = {key.kid for key in ring}
            for cache in (self._public, self._private):
                for kid in [kid for kid in cache if kid not in live]:
                    del cache[kid]
        return ring

    def _ring_key(self, record: SigningKeyRecord) -> RingKey:
        public = self._public.get(record.kid)
        if public is None:
            public = _public_key_of(record)
            self._public[record.kid] = public
        signing: SigningKey | None = None
        if record.state == ACTIVE:
            signing = self._private.get(record.kid)
            if signing is None:
                if record.sealed_private_key is None:
                    raise KeyMaterialError(detail=f"active key {record.kid} has no private key")
                private = unseal_private_key(
                    record.sealed_private_key, record.kid, self._sealing_key
                )
                signing = SigningKey(kid=record.kid, private_key=private)
                self._private[record.kid] = signing
        return RingKey(kid=record.kid, public_key=public, signing_key=signing)

    # Lifecycle
    def ensure_active(self, signing_key_file: str | None) -> None:
        """First start: create (or import) the active key. Workers racing here are fine: the
        store admits one active key, and the losers use the winner's."""
        imported = _import_key_file(signing_key_file) if signing_key_file else None
        active = self._store.signing_keys.active()
        if active is None:
            key = imported or SigningKey.generate(self._key_size)
            try:
                self._store.signing_keys.add(self._record(key, datetime.now(UTC)))
                log.info("created signing key %s", key.kid)
            except Conflict:
                log.info("another worker created the first signing key")
        elif imported is not None and active.kid != imported.kid:
            if self._store.signing_keys.get(imported.kid) is not None:
                log.warning(
                    "LICENSECHAIN_SIGNING_KEY_FILE holds key %s, which was rotated out; "
                    "keeping the active key %s",
                    imported.kid,
                    active.kid,
                )
            else:
                try:
                    self.rotate(imported)
                except Conflict:
                    log.info("another worker imported signing key %s", imported.kid)
        self._store.signing_keys.retire_expired(datetime.now(UTC))

    def rotate(self, new_key: SigningKey | None = None) -> RotationResult:
        key = new_key or SigningKey.generate(self._key_size)
        now = datetime.now(UTC)
        previous = self._store.signing_keys.active()
        expires_at = now + self.retire_after
        self._store.signing_keys.rotate(self._record(key, now), now=now, old_expires_at=expires_at)
        self._store.signing_keys.retire_expired(now)
        log.info("rotated signing key: %s is active", key.kid)
        return RotationResult(
            kid=key.kid,
            previous_kid=previous.kid if previous else None,
            previous_expires_at=expires_at if previous else None,
        )

    def _record(self, key: SigningKey, now: datetime) -> SigningKeyRecord:
        return SigningKeyRecord(
            kid=key.kid,
            public_jwk=key.jwk(),
            sealed_private_key=seal_private_key(key.private_key, key.kid, self._sealing_key),
            state=ACTIVE,
            created_at=now,
            retired_at=None,
            expires_at=None,
        )


def _public_key_of(record: SigningKeyRecord) -> rsa.RSAPublicKey:
    jwk = record.public_jwk
    if thumbprint(jwk) != record.kid:
        raise KeyMaterialError(detail=f"stored key {record.kid}: kid is not its thumbprint")
    key = jwt.algorithms.RSAAlgorithm.from_jwk(dict(jwk))
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyMaterialError(detail=f"stored key {record.kid} is not an RSA public key")
    return key


def _import_key_file(path: str) -> SigningKey:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise IssuerConfigurationError(
            f"cannot read LICENSECHAIN_SIGNING_KEY_FILE {path}: {exc.strerror}"
        ) from exc
    return SigningKey.from_private_key(load_private_pem(pem))


def signing_keys_of(state: LicenseChainState) -> SigningKeys:
    keys = state.extras.get(ISSUER_EXTRA)
    if not isinstance(keys, SigningKeys):
        raise RuntimeError("this LicenseChain app is not an issuer (integrator mode?)")
    return keys


def rotate_signing_key(state: LicenseChainState) -> RotationResult:
    """Make a new active key. The old one stays in the JWKS until its last token expires."""
    result = signing_keys_of(state).rotate()
    if state.keyring is not None:
        state.keyring.reload()  # this worker signs with the new key at once
    return result


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


def init_issuer(app: Flask, settings: Settings) -> LicenseChainState:
    from .api import create_blueprint, create_root_blueprint
    from .api.http import install_json_errors, install_prefix_routing_errors
    from .api.ratelimit import PublicRateLimits
    from .extension import LicenseChainState, build_denylist

    settings = resolve_issuer(app, settings)
    database_url = settings.database_url or default_database_url(app)
    sealing_key = resolve_encryption_key(app, settings, database_url)
    store = open_store(database_url)
    store.prepare_schema()
    # The store records every revocation; the denylist follows it (and Redis, when set).
    denylist = build_denylist(settings, source=store.revocations)

    signing_keys = SigningKeys(store, sealing_key, settings)
    signing_keys.ensure_active(settings.signing_key_file)
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
    state = LicenseChainState(
        settings=settings,
        verifier=verifier,
        denylist=denylist,
        key_source=keyring,
        store=store,
        keyring=keyring,
        limiter=PublicRateLimits(settings),
        extras={ISSUER_EXTRA: signing_keys},
    )
    if settings.register_blueprint:
        has_root_health = any(rule.rule == "/health" for rule in app.url_map.iter_rules())
        app.register_blueprint(create_blueprint(state), url_prefix=settings.url_prefix)
        if settings.url_prefix.strip("/") and not has_root_health:
            app.register_blueprint(create_root_blueprint(state))
        install_prefix_routing_errors(app, settings.url_prefix)
        if settings.json_errors:
            install_json_errors(app)
    _register_cli(app)
    return state


def _register_cli(app: Flask) -> None:
    from .cli import licensechain_cli  # imported here: click work only for issuer apps

    if licensechain_cli.name not in app.cli.commands:
        app.cli.add_command(licensechain_cli)
