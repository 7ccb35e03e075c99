"""Every ``LICENSECHAIN_*`` setting, its default and its meaning, in one place.

Precedence: a keyword given to ``LicenseChain(...)``/``init_app`` beats
``app.config`` beats the default here. The example apps and the gateway also read
the environment (``Settings.from_mapping(os.environ)``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .core.errors import ConfigError
from .core.gate import DEFAULT_TOKEN_COOKIE, DEFAULT_TOKEN_SOURCES, check_cookie_name
from .core.gate import check_token_sources as _token_sources
from .core.keys import ALLOWED_KEY_SIZES
from .core.options import (
    SHARED_OPTIONS,
    check_audience,
    check_http_url,
    check_leeway,
    check_positive,
    check_rate_limit,
    check_storage_uri,
    closest,
    parse_bool,
    parse_float,
    parse_int,
    require_driver,
)
from .core.sealing import parse_key_list

PREFIX = "LICENSECHAIN_"
log = logging.getLogger("licensechain.config")

Parser = Callable[[Any, str], Any]


def _opt(default: Any, doc: str, parse: Parser | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "parse": parse})


def _shared(default: Any, name: str, parse: Parser | None = None) -> Any:
    return _opt(default, SHARED_OPTIONS[name], parse)


def _text(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _positive_float(value: Any, key: str) -> float:
    number = parse_float(value, key)
    check_positive(number, key)
    return number


def _positive_int(value: Any, key: str) -> int:
    number = parse_int(value, key)
    check_positive(number, key)
    return number


def _non_negative_int(value: Any, key: str) -> int:
    number = parse_int(value, key)
    if number < 0:
        raise ConfigError(f"{key} must be >= 0, got {number}")
    return number


def _non_negative_float(value: Any, key: str) -> float:
    number = parse_float(value, key)
    if number < 0:
        raise ConfigError(f"{key} must be >= 0, got {number}")
    return number


def _leeway(value: Any, key: str) -> float:
    number = parse_float(value, key)
    check_leeway(number, key)
    return number


def _storage(value: Any, key: str) -> str | None:
    text = _text(value, key)
    return None if text is None else check_storage_uri(text, key)


def _http_url(value: Any, key: str) -> str | None:
    text = _text(value, key)
    return None if text is None else check_http_url(text, key)


def _database_url(value: Any, key: str) -> str | None:
    text = _text(value, key)
    if text is None:
        return None
    import sqlalchemy as sa  # the store's dependency; parsed here to name the setting

    try:
        url = sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ConfigError(f"{key} is not a database URL: {exc}") from None
    if url.get_backend_name() == "postgresql":
        require_driver("psycopg", "postgres", f"{key} postgresql://")
    return text


def _key_size(value: Any, key: str) -> int:
    bits = parse_int(value, key)
    if bits not in ALLOWED_KEY_SIZES:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, ALLOWED_KEY_SIZES))}")
    return bits


def _rate_limit(value: Any, key: str) -> str:
    return check_rate_limit(value, key)


def _url_prefix(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{key} must be a path starting with '/', got {value!r}")
    return value


def _key_list(value: Any, key: str) -> tuple[tuple[str, bytes], ...] | None:
    if value is None or value == "" or value == ():
        return None
    return parse_key_list(value, key)


def _name_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{key} must be a comma-separated list of names, got {value!r}")
    return tuple(dict.fromkeys(i.strip() for i in items if i.strip()))


def _cookie(value: Any, key: str) -> str:
    return check_cookie_name(value, key)


#: ``LICENSECHAIN_RATELIMIT_BACKEND`` values.
RATELIMIT_BACKENDS = ("limits", "flask-limiter")


def _ratelimit_backend(value: Any, key: str) -> str:
    if value not in RATELIMIT_BACKENDS:
        raise ConfigError(f"{key} must be one of {', '.join(RATELIMIT_BACKENDS)}, got {value!r}")
    return str(value)


def _optional_bool(value: Any, key: str) -> bool | None:
    if value is None or value == "":
        return None
    return parse_bool(value, key)


def _retry_schedule(value: Any, key: str) -> tuple[float, ...]:
    items: Any = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or len(items) > 30:
        raise ConfigError(f"{key} must be a list of at most 30 delays in seconds")
    delays = tuple(_non_negative_float(item, key) for item in items)
    return delays


def _optional_path(value: Any, key: str) -> str | None:
    text = _text(value, key)
    if text is None:
        return None
    if not text.startswith("/") or any(c in text for c in "<>?#") or text != text.strip():
        raise ConfigError(f"{key} must be a plain path starting with '/', got {value!r}")
    return text


def _optional_port(value: Any, key: str) -> int | None:
    if value is None or value == "":
        return None
    port = parse_int(value, key)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key} must be a TCP port (1 to 65535), got {port}")
    return port


def _signal_threshold(value: Any, key: str) -> str:
    """``COUNT/PERIOD`` (``limits`` syntax, one item: ``10/hour``, ``50/10 minutes``) or
    ``off``."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return "off"
    from limits import parse_many  # the limits package loads its storages on import

    try:
        parsed = parse_many(value) if isinstance(value, str) else []
    except (ValueError, TypeError):
        parsed = []
    if len(parsed) != 1 or parsed[0].amount < 1:
        raise ConfigError(f"{key}: {value!r} is not a threshold such as '10/hour' (or 'off')")
    return str(value)


def _signals_storage(value: Any, key: str) -> str | None:
    text = _text(value, key)
    if text is None:
        return None
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in ("memory", "redis", "rediss"):
        raise ConfigError(f"{key} must be memory:// or a redis:// or rediss:// URI")
    return check_storage_uri(text, key)


def _word_list(value: Any, key: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{key} must be a comma-separated string or a list of strings")
    return tuple(i.strip() for i in items if i.strip())


def _console_switch(value: Any, key: str) -> bool:
    enabled = parse_bool(value, key)
    if enabled:
        require_driver("flask_wtf", "console", key)
    return enabled


@dataclass(frozen=True)
class Settings:
    database_url: str | None = _opt(
        None,
        "SQLAlchemy URL of the store. Default: SQLite file `licensechain.db` (WAL) "
        "in the app's instance folder. `postgresql://...` for production.",
        _database_url,
    )
    redis_url: str | None = _opt(
        None, "Redis URI; when set, the denylist and rate limits default to it.", _storage
    )
    denylist_url: str | None = _opt(
        None, SHARED_OPTIONS["denylist_url"] + " Default: `redis_url` or `memory://`.", _storage
    )
    ratelimit_storage_url: str | None = _opt(
        None,
        SHARED_OPTIONS["ratelimit_storage_url"] + " Default: `redis_url` or `memory://`.",
        _storage,
    )
    issuer: str | None = _opt(
        None,
        SHARED_OPTIONS["issuer"] + " Issuer apps: required outside debug and testing, "
        "unless Flask's `SERVER_NAME` is set (then `<scheme>://<SERVER_NAME><url_prefix>`).",
        _text,
    )
    url_prefix: str = _opt("/v1", "Prefix of the HTTP API blueprint.", _url_prefix)
    encryption_key: str | None = _opt(
        None,
        "32-byte AES-256-GCM key (base64url or hex) sealing secrets at rest (key id "
        "`default`). "
        "Default (embedded only): generated in a 0600 file beside the SQLite database.",
        _text,
    )
    encryption_keys: tuple[tuple[str, bytes], ...] | None = _opt(
        None,
        "Keyring of AES-256-GCM keys sealing secrets at rest, `id:key` entries separated by "
        "commas (`k2:<key>,k1:<key>`): the first seals, each unseals the values that name "
        "its id. Replaces `LICENSECHAIN_ENCRYPTION_KEY` (which is the ring `default:<key>`); "
        "set one of the two. See README, Data protection.",
        _key_list,
    )
    retention_days_ip: int = _opt(
        90,
        "Days client IP addresses and user agents are kept as stored; older ones are "
        "truncated (IP to its /24 or /48 network) or erased (user agent) by "
        "`flask licensechain maintenance run`.",
        _positive_int,
    )
    personal_metadata_keys: tuple[str, ...] = _opt(
        (),
        "License `metadata` keys that hold personal data (comma-separated): a customer "
        "erasure removes them.",
        _name_list,
    )
    signing_key_file: str | None = _opt(
        None, "PEM file of an RSA private key to import as the active signing key.", _text
    )
    key_size: int = _opt(
        2048, "RSA modulus size for generated signing keys (2048, 3072 or 4096).", _key_size
    )
    key_refresh_interval: float = _opt(
        5.0,
        "Seconds between reloads of the key ring, so rotations reach every worker "
        "(0: before every use).",
        _non_negative_float,
    )
    leeway: float = _shared(30, "leeway", _leeway)
    max_token_bytes: int = _shared(8192, "max_token_bytes", _positive_int)
    max_body_bytes: int = _opt(65536, "Request bodies larger than this get 413.", _positive_int)
    verified_cache_size: int = _shared(10000, "verified_cache_size", _non_negative_int)
    ratelimit_enabled: bool = _opt(
        True,
        "Rate limit the public endpoints and failed API-key authentications.",
        parse_bool,
    )
    ratelimit_per_ip: str = _opt(
        "10/second;100/minute;1000/hour", "Limits per client IP on public endpoints.", _rate_limit
    )
    ratelimit_per_key: str = _opt(
        "10/second;100/minute;1000/hour",
        "Limits per license key on verify/validate-hardware.",
        _rate_limit,
    )
    ratelimit_fail_open: bool = _shared(True, "ratelimit_fail_open", parse_bool)
    api_key_failure_limit: str = _opt(
        "20/minute",
        "Failed API-key authentications allowed per client IP (a `limits` string, counted "
        "in the rate-limit storage while `ratelimit_enabled`); over it every request from "
        "that IP answers 429 with `Retry-After`, a correct key included.",
        _rate_limit,
    )
    denylist_mirror: bool = _opt(
        True,
        "Keep an in-process copy of a Redis denylist, kept current over pub/sub, so "
        "revocation checks cost no round trip. False: ask Redis on every check (integrator "
        "apps; an issuer always checks its copy of the store's record).",
        parse_bool,
    )
    revocation_poll_interval: float = _opt(
        0.25,
        "Issuer: seconds between two reads of the store's revocation counter per process "
        "(at most one per interval, on the request path): without Redis, the bound on how "
        "late another worker refuses a revoked token.",
        _non_negative_float,
    )
    denylist_fail_open: bool = _shared(False, "denylist_fail_open", parse_bool)
    jwks_url: str | None = _opt(None, "Integrator mode: " + SHARED_OPTIONS["jwks_url"], _http_url)
    jwks_file: str | None = _opt(None, "Integrator mode: " + SHARED_OPTIONS["jwks_file"], _text)
    jwks_cache_ttl: float = _shared(300, "jwks_cache_ttl", _positive_float)
    jwks_allow_http: bool = _shared(False, "jwks_allow_http", parse_bool)
    audience: str | tuple[str, ...] | None = _opt(
        None,
        SHARED_OPTIONS["audience"] + " Integrator apps need it; an issuer app may give it "
        "here or per decorator (`audience=`).",
        check_audience,
    )
    verify_audience: bool = _shared(True, "verify_audience", parse_bool)
    token_sources: tuple[str, ...] = _shared(DEFAULT_TOKEN_SOURCES, "token_sources", _token_sources)
    token_cookie: str = _shared(DEFAULT_TOKEN_COOKIE, "token_cookie", _cookie)
    authoritative: bool = _opt(
        False,
        "The gate also asks the server (introspect, or the local store) for live status.",
        parse_bool,
    )
    introspect_url: str | None = _opt(
        None, "Introspect URL for authoritative mode (integrators).", _http_url
    )
    authoritative_cache_ttl: float = _opt(
        5.0, "Seconds an authoritative answer is reused.", _non_negative_float
    )
    register_blueprint: bool = _opt(
        True, "Issuer mode: register the /v1 API blueprint.", parse_bool
    )
    json_errors: bool = _opt(
        True,
        "Issuer mode: every HTTP error of the app (unknown paths included) answers the JSON "
        "error body, never HTML. The host app's own error handlers keep precedence.",
        parse_bool,
    )
    ratelimit_backend: str = _opt(
        "limits",
        "`limits`: the public endpoints count with the `limits` library directly (faster). "
        "`flask-limiter`: through the app's own Flask-Limiter `Limiter` (its storage, headers, "
        "exemptions; `pip install 'flask-licensechain[limiter]'`), which must be initialised "
        "on the app before LicenseChain.",
        _ratelimit_backend,
    )
    api_docs: bool | None = _opt(
        None,
        "Serve the API reference (Swagger UI, from the `docs` extra) at `<url_prefix>/docs`. "
        "Default (`None`): on in debug, off otherwise.",
        _optional_bool,
    )

    webhooks_allow_private: bool = _opt(
        False,
        "Webhooks may go to loopback, private and link-local addresses, and over plain "
        "http (development and tests only: see flask_licensechain/webhooks/ssrf.py).",
        parse_bool,
    )
    webhooks_timeout: float = _opt(
        10.0, "Seconds one webhook attempt may take in all (connect, TLS, answer).", _positive_float
    )
    webhooks_retry_schedule: tuple[float, ...] = _opt(
        (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, 50400.0, 50400.0, 50400.0),
        "Seconds between the attempts of a webhook delivery (each +-20% jitter), a list or "
        "comma-separated; after the last the delivery is dead. Default: about 3 days.",
        _retry_schedule,
    )
    webhooks_disable_after: float = _opt(
        5 * 86400.0,
        "Seconds a webhook endpoint may fail without one success before it is disabled.",
        _positive_float,
    )
    webhooks_secret_overlap: float = _opt(
        86400.0,
        "Seconds a rotated-out webhook secret keeps signing beside the new one.",
        _non_negative_float,
    )
    webhooks_background: bool = _opt(
        False,
        "Deliver webhooks from a background thread of the web process (embedded use); "
        "otherwise run `flask licensechain webhooks run`.",
        parse_bool,
    )
    webhooks_retention_days: int = _opt(
        30,
        "Days finished webhook deliveries (with their payloads) are kept before the worker "
        "deletes them.",
        _positive_int,
    )
    webhooks_poll_interval: float = _opt(
        1.0, "Seconds a webhook worker waits between two looks at the queue.", _positive_float
    )
    # -- monitoring (flask_licensechain/monitoring/) --------------------------------------
    security_headers: bool = _opt(
        True,
        "Issuer mode: every response of the app gets `X-Content-Type-Options: nosniff`, "
        "`Referrer-Policy: no-referrer` and `X-Frame-Options: DENY` (a header the view set "
        "is kept), and `Strict-Transport-Security` when the request came over HTTPS (after "
        "ProxyFix).",
        parse_bool,
    )
    hsts: bool = _opt(
        False,
        "Send `Strict-Transport-Security` on every response, plain HTTP included (TLS ends "
        "at a proxy that the app does not see through ProxyFix).",
        parse_bool,
    )
    hsts_max_age: int = _opt(
        31536000, "`max-age` of `Strict-Transport-Security`, in seconds.", _positive_int
    )
    metrics_enabled: bool = _opt(
        False,
        "Count Prometheus metrics (prometheus-client) even when neither `metrics_path` nor "
        "`metrics_port` serves them (an exporter of your own). Under gunicorn set "
        "`PROMETHEUS_MULTIPROC_DIR` (see Deployment).",
        parse_bool,
    )
    metrics_path: str | None = _opt(
        None,
        "Serve the Prometheus metrics at this path (e.g. `/metrics`), only to an API key "
        "with the `metrics:read` scope. Default: not served.",
        _optional_path,
    )
    metrics_port: int | None = _opt(
        None,
        "Serve the Prometheus metrics without credentials on `127.0.0.1:<port>` (loopback "
        "only). Default: not served.",
        _optional_port,
    )
    access_log: bool = _opt(
        False,
        "One JSON line per request on the `licensechain.access` logger (request id, route "
        "template, method, status, latency, API key id); never a key, a token or a body.",
        parse_bool,
    )
    signals_enabled: bool = _opt(
        True,
        "Issuer mode: watch each license for the security signals below; each one over its "
        "threshold records a `security.anomaly` audit event (once per window) and never "
        "blocks a customer.",
        parse_bool,
    )
    signals_storage_url: str | None = _opt(
        None,
        "Where the signals are counted: `memory://` (per process) or `redis://`/`rediss://` "
        "(shared by every worker). Default: `redis_url` when it is redis:// or rediss://, "
        "else `memory://`.",
        _signals_storage,
    )
    signal_hardware_churn: str = _opt(
        "10/hour",
        "Signal: hardware-id churn of one license (devices bound, released, and refusals "
        "for `hardware_id_mismatch`) over `COUNT/PERIOD`, or `off`.",
        _signal_threshold,
    )
    signal_key_sharing: str = _opt(
        "20/hour",
        "Signal: distinct client IPs presenting one license key over `COUNT/PERIOD`, or `off`.",
        _signal_threshold,
    )
    signal_failed_verifications: str = _opt(
        "50/10 minutes",
        "Signal: refused verifications of one license over `COUNT/PERIOD`, or `off`.",
        _signal_threshold,
    )

    console: bool = _opt(
        False,
        "Issuer mode: serve the admin console (people sign in with a password and a second "
        "factor). Needs the `console` extra and Flask's `SECRET_KEY` (CSRF tokens).",
        _console_switch,
    )
    console_path: str = _opt("/console", "Path of the admin console.", _url_prefix)
    console_url: str | None = _opt(
        None,
        "Absolute URL of the console, for the setup links the CLI prints. Default: the "
        "origin of `LICENSECHAIN_ISSUER` plus `LICENSECHAIN_CONSOLE_PATH`.",
        _http_url,
    )
    console_idle_timeout: float = _opt(
        1800, "Seconds of inactivity after which a console session ends.", _positive_float
    )
    console_absolute_timeout: float = _opt(
        43200,
        "Seconds after sign-in at which a console session ends, active or not.",
        _positive_float,
    )
    console_mfa_max_age: float = _opt(
        600,
        "Seconds a second-factor check counts for sensitive console actions "
        "(`@requires_recent_mfa`); older, it is asked again.",
        _positive_float,
    )
    console_lockout_seconds: float = _opt(
        3600,
        "Seconds a console account stays locked after 10 failed sign-ins in 15 minutes "
        "(an owner may unlock it sooner).",
        _positive_float,
    )

    console_sso_issuer: str | None = _opt(
        None,
        "Console SSO: the OpenID Connect issuer URL (its `/.well-known/openid-configuration` "
        "is read). People sign in as the console user with the same verified email; SSO "
        "never creates a user.",
        _http_url,
    )
    console_sso_client_id: str | None = _opt(None, "Console SSO: the client id.", _text)
    console_sso_client_secret: str | None = _opt(None, "Console SSO: the client secret.", _text)
    console_sso_mfa_values: tuple[str, ...] = _opt(
        (),
        "Console SSO: `amr` or `acr` values (comma-separated) that count as the identity "
        "provider's multi-factor sign-in. Empty: the console still asks its own second factor.",
        _word_list,
    )

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, Any],
        overrides: Mapping[str, Any] | None = None,
        *,
        environment: bool = False,
    ) -> Settings:
        """Read and check every ``LICENSECHAIN_*`` value of ``mapping``.

        ``overrides`` (keyword options, by field name) beat ``mapping``. Each value is
        parsed strictly. An unknown ``LICENSECHAIN_*`` key is a ``ConfigError`` that
        suggests the closest known one; with ``environment=True`` (``os.environ``, which
        LicenseChain's SDKs share) it is only logged.

        :raises ConfigError: a bad value or an unknown key, naming the setting.
        :raises TypeError: an unknown keyword option.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides or ()) - set(fields))
        if unknown:
            raise TypeError(
                f"unknown LicenseChain option(s): {', '.join(unknown)}"
                + closest(unknown[0], fields)
            )
        _check_unknown_keys(mapping, fields, environment=environment)
        values: dict[str, Any] = {}
        for name, f in fields.items():
            key = PREFIX + name.upper()
            if overrides and name in overrides and overrides[name] is not None:
                raw: Any = overrides[name]
            elif key in mapping:
                raw = mapping[key]
            else:
                continue
            parse: Parser | None = f.metadata["parse"]
            values[name] = parse(raw, key) if parse is not None else raw
        return cls(**values)

    @property
    def integrator_mode(self) -> bool:
        return bool(self.jwks_url or self.jwks_file)

    def __repr__(self) -> str:  # never show the encryption key or credentials in URLs
        return f"Settings(integrator_mode={self.integrator_mode}, url_prefix={self.url_prefix!r})"


#: ``LICENSECHAIN_*`` names other LicenseChain tools read from the same environment.
_FOREIGN_PREFIXES = ("LICENSECHAIN_GATEWAY_",)


def _check_unknown_keys(
    mapping: Mapping[str, Any], fields: Collection[str], *, environment: bool
) -> None:
    known = [PREFIX + name.upper() for name in fields]
    for key in mapping:
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        # Only the upper-case spelling is read: another case would be silently ignored.
        if key in known or key.startswith(_FOREIGN_PREFIXES):
            continue
        message = f"unknown setting {key}{closest(key, known)}"
        if environment:
            log.warning("%s (ignored: other LicenseChain tools may read it)", message)
        else:
            raise ConfigError(message)


def config_from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The known ``LICENSECHAIN_*`` values of a process environment, for ``app.config``.

    An unknown ``LICENSECHAIN_*`` name is logged with the closest known one, not raised:
    LicenseChain's SDKs read ``LICENSECHAIN_API_KEY`` and the like from the same
    environment. Values are checked later, by ``init_app``.
    """
    fields = {f.name for f in dataclasses.fields(Settings)}
    _check_unknown_keys(environ, fields, environment=True)
    known = {PREFIX + name.upper() for name in fields}
    return {k: v for k, v in environ.items() if k in known}


def settings_table() -> str:
    """The README's configuration table."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        rows.append(f"| `{PREFIX}{f.name.upper()}` | `{f.default!r}` | {f.metadata['doc']} |")
    return "\n".join(rows)
