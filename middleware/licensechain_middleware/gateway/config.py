"""The gateway's configuration: one TOML file, overridable by the environment.

The file's top-level keys and ``[[rules]]`` are the gate's (``GateConfig``); the
``[gateway]`` table holds the proxy's own settings (``GatewaySettings``)::

    issuer = "https://licenses.example.com/v1"
    audience = "app_123"
    jwks_url = "https://licenses.example.com/v1/licenses/jwks"

    [[rules]]
    path = "/public/**"
    public = true

    [gateway]
    upstream = "http://127.0.0.1:9000"

Environment overrides (read at start):

* ``LICENSECHAIN_GATEWAY_<KEY>`` for any ``[gateway]`` key; an unknown one is an error.
* ``LICENSECHAIN_<KEY>`` for any scalar gate key (``LICENSECHAIN_AUDIENCE``,
  ``LICENSECHAIN_JWKS_URL``, ``LICENSECHAIN_DENYLIST_URL``...); list keys
  (``audience``, ``token_sources``, ``trusted_proxies``) take comma-separated values.
  Rules come from the file only.
* ``LICENSECHAIN_REDIS_URL`` is the default of ``denylist_url`` and
  ``ratelimit_storage_url`` when neither the file nor their own variable sets them.
* Any other ``LICENSECHAIN_*`` variable is logged as a warning with the closest known
  name, as the Flask extension does: LicenseChain's SDKs read their own from the same
  environment, but a misspelt ``LICENSECHAIN_DENYLIST_URL`` must not pass unnoticed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask_licensechain.core.options import closest

from ..config import ConfigError, GateConfig
from .settings import ENV_PREFIX, GatewayConfigError, GatewaySettings, parse_env_value

log = logging.getLogger("licensechain.gateway")

CONFIG_ENV = "LICENSECHAIN_GATEWAY_CONFIG"
GATE_ENV_PREFIX = "LICENSECHAIN_"
REDIS_URL_ENV = "LICENSECHAIN_REDIS_URL"

#: Gate keys that cannot come from a flat environment variable.
_NOT_FROM_ENV = frozenset({"rules", "jwks", "key_source"})
_LIST_KEYS = frozenset({"audience", "token_sources", "trusted_proxies"})


@dataclass(frozen=True)
class GatewayConfig:
    gateway: GatewaySettings
    gate: GateConfig
    source: str


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read, merge and validate; raise ``GatewayConfigError`` with a readable message."""
    env = os.environ if env is None else env
    path = path if path is not None else env.get(CONFIG_ENV)
    document: dict[str, Any] = {}
    source = "environment"
    if path:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                document = tomllib.load(fh)
        except FileNotFoundError:
            raise GatewayConfigError(f"{path}: no such file") from None
        except OSError as exc:
            raise GatewayConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise GatewayConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_document(document, env, source=source)


def config_from_document(
    document: Mapping[str, Any], env: Mapping[str, str], *, source: str = "<config>"
) -> GatewayConfig:
    document = dict(document)
    table = document.pop("gateway", {})
    if not isinstance(table, Mapping):
        raise GatewayConfigError(f"{source}: 'gateway' must be a table ([gateway])")
    _reject_unknown_gateway_env(env)
    _warn_unknown_gate_env(env)
    try:
        settings = GatewaySettings.from_table(table, env)
    except GatewayConfigError as exc:
        raise GatewayConfigError(f"{source}: {exc}") from None
    try:
        gate = GateConfig.from_mapping(gate_mapping(document, env))
    except ConfigError as exc:
        raise GatewayConfigError(f"{source}: {exc}") from None
    if settings.mode == "authz" and not gate.trusted_proxies:
        raise GatewayConfigError(
            f"{source}: mode 'authz' needs trusted_proxies: the addresses of the proxies "
            "that ask for decisions (no one else is answered)"
        )
    return GatewayConfig(gateway=settings, gate=gate, source=source)


def gate_mapping(document: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The file's gate keys with the environment's overrides applied."""
    values = dict(document)
    for f in dataclasses.fields(GateConfig):
        if f.name in _NOT_FROM_ENV:
            continue
        env_key = GATE_ENV_PREFIX + f.name.upper()
        if env_key in env:
            values[f.name] = _coerce(f, env[env_key], env_key)
    redis_url = env.get(REDIS_URL_ENV)
    if redis_url:
        values.setdefault("denylist_url", redis_url)
        values.setdefault("ratelimit_storage_url", redis_url)
    return values


def _coerce(f: dataclasses.Field[Any], text: str, env_key: str) -> Any:
    kind = str(f.type)
    if f.name in _LIST_KEYS:
        items = [item.strip() for item in text.split(",") if item.strip()]
        return items[0] if f.name == "audience" and len(items) == 1 else items
    if text == "" and "None" in kind:
        return None
    return parse_env_value(kind.split(" |")[0].strip(), text, env_key)


def _reject_unknown_gateway_env(env: Mapping[str, str]) -> None:
    known = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(GatewaySettings)}
    known.add(CONFIG_ENV)
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise GatewayConfigError(f"unknown environment variable(s): {', '.join(unknown)}")


def _warn_unknown_gate_env(env: Mapping[str, str]) -> None:
    known = {
        GATE_ENV_PREFIX + f.name.upper()
        for f in dataclasses.fields(GateConfig)
        if f.name not in _NOT_FROM_ENV
    }
    known.add(REDIS_URL_ENV)
    for key in sorted(env):
        if key.startswith(GATE_ENV_PREFIX) and not key.startswith(ENV_PREFIX):
            if key not in known:
                log.warning(
                    "unknown setting %s%s (ignored: other LicenseChain tools may read it)",
                    key,
                    closest(key, known),
                )


def resolve_path(path: str | os.PathLike[str]) -> str:
    """Absolute path, so workers started elsewhere find the same file."""
    return str(Path(path).resolve())
