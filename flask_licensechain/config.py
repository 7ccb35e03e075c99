"""Every ``LICENSECHAIN_*`` setting, its default and its meaning, in one place.

Precedence: a keyword given to ``LicenseChain(...)``/``init_app`` beats
``app.config`` beats the default here. The example apps and the gateway also read
the environment (``Settings.from_mapping(os.environ)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "LICENSECHAIN_"


def _opt(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    database_url: str | None = _opt(
        None,
        "SQLAlchemy URL of the store. Default: SQLite file `licensechain.db` (WAL) "
        "in the app's instance folder. `postgresql://...` for production.",
    )
    redis_url: str | None = _opt(
        None, "Redis URI; when set, the denylist and rate limits default to it."
    )
    denylist_url: str | None = _opt(
        None,
        "Denylist storage URI (`memory://`, `redis://`, ...). Default: `redis_url` or `memory://`.",
    )
    ratelimit_storage_url: str | None = _opt(
        None, "Rate-limit storage URI for `limits`. Default: `redis_url` or `memory://`."
    )
    issuer: str | None = _opt(
        None,
        "`iss` of issued tokens and the issuer verifiers require. Default: the API's base URL.",
    )
    url_prefix: str = _opt("/v1", "Prefix of the HTTP API blueprint.")
    encryption_key: str | None = _opt(
        None,
        "32-byte AES-256-GCM key (base64url or hex) sealing private keys at rest. "
        "Default (embedded only): generated in a 0600 file beside the SQLite database.",
    )
    signing_key_file: str | None = _opt(
        None, "PEM file of an RSA private key to import as the active signing key."
    )
    key_size: int = _opt(2048, "RSA modulus size for generated signing keys (2048, 3072 or 4096).")
    key_refresh_interval: float = _opt(
        5.0, "Seconds between reloads of the key ring, so rotations reach every worker."
    )
    leeway: float = _opt(30, "Clock leeway in seconds for exp/nbf/iat (capped at 300).")
    max_token_bytes: int = _opt(8192, "Tokens longer than this are refused before parsing.")
    max_body_bytes: int = _opt(65536, "Request bodies larger than this get 413.")
    verified_cache_size: int = _opt(
        10000,
        "Verified-token LRU entries per process (about 4 KiB each for a typical "
        "token; the cache is also capped at 64 MiB estimated).",
    )
    ratelimit_enabled: bool = _opt(True, "Rate limit the public endpoints.")
    ratelimit_per_ip: str = _opt(
        "10/second;100/minute;1000/hour", "Limits per client IP on public endpoints."
    )
    ratelimit_per_key: str = _opt(
        "10/second;100/minute;1000/hour", "Limits per license key on verify/validate-hardware."
    )
    ratelimit_fail_open: bool = _opt(
        True,
        "When the rate-limit store is down, count in process memory instead (logged); "
        "false: answer 503.",
    )
    denylist_mirror: bool = _opt(
        True,
        "Keep an in-process copy of a Redis denylist, kept current over pub/sub, so "
        "revocation checks cost no round trip. False: ask Redis on every check.",
    )
    denylist_fail_open: bool = _opt(
        False, "When the denylist is down, let tokens through (logged). Default: fail closed."
    )
    jwks_url: str | None = _opt(
        None, "Integrator mode: verify tokens against this JWKS URL instead of a local key ring."
    )
    jwks_file: str | None = _opt(None, "Integrator mode, air-gapped: a JWKS JSON file.")
    jwks_cache_ttl: float = _opt(300, "Default lifetime of a fetched JWKS (max-age is honoured).")
    jwks_allow_http: bool = _opt(False, "Allow a plain-http JWKS URL that is not loopback.")
    audience: str | None = _opt(
        None, "App id that the gate requires in `aud` (integrator mode: set it)."
    )
    token_header: bool = _opt(True, "Read the token from `Authorization: Bearer`.")
    token_x_header: bool = _opt(False, "Also read the token from `X-License-Token`.")
    token_cookie: str | None = _opt(None, "Also read the token from this cookie.")
    authoritative: bool = _opt(
        False, "The gate also asks the server (introspect, or the local store) for live status."
    )
    introspect_url: str | None = _opt(None, "Introspect URL for authoritative mode (integrators).")
    authoritative_cache_ttl: float = _opt(5.0, "Seconds an authoritative answer is reused.")
    register_blueprint: bool = _opt(True, "Issuer mode: register the /v1 API blueprint.")
    json_errors: bool = _opt(
        True,
        "Issuer mode: every HTTP error of the app (unknown paths included) answers the JSON "
        "error body, never HTML. The host app's own error handlers keep precedence.",
    )

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = PREFIX + f.name.upper()
            if overrides and f.name in overrides and overrides[f.name] is not None:
                values[f.name] = overrides[f.name]
            elif key in mapping:
                values[f.name] = _coerce(f, mapping[key])
        unknown = set(overrides or ()) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown LicenseChain option(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @property
    def integrator_mode(self) -> bool:
        return bool(self.jwks_url or self.jwks_file)

    def __repr__(self) -> str:  # never show the encryption key or credentials in URLs
        return f"Settings(integrator_mode={self.integrator_mode}, url_prefix={self.url_prefix!r})"


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    """Environment values are strings; turn them into the field's type."""
    if not isinstance(value, str):
        return value
    kind = str(f.type)
    if kind.startswith("bool"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("float"):
        return float(value)
    if value == "" and "None" in kind:
        return None
    return value


def settings_table() -> str:
    """The README's configuration table."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        rows.append(f"| `{PREFIX}{f.name.upper()}` | `{f.default!r}` | {f.metadata['doc']} |")
    return "\n".join(rows)
