"""The ``[gateway]`` table of the gateway's TOML file: the proxy's own settings.

Every key can be overridden by the environment variable
``LICENSECHAIN_GATEWAY_<KEY>`` (upper case), e.g. ``LICENSECHAIN_GATEWAY_UPSTREAM``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask_licensechain.core.errors import ConfigError
from flask_licensechain.core.options import check_positive, parse_bool, parse_float, parse_int

from .bodies import BodyPolicy
from .client import UpstreamLimits
from .urls import UpstreamBase

ENV_PREFIX = "LICENSECHAIN_GATEWAY_"
SERVERS = ("gunicorn", "uvicorn")
MODES = ("proxy", "authz")
WORKER_CLASSES = ("gevent", "gthread")


class GatewayConfigError(ValueError):
    """The configuration is unusable; the message says which key and why."""


def _opt(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class GatewaySettings:
    mode: str = _opt(
        "proxy",
        "`proxy` (gate and forward to `upstream`) or `authz` (answer forward-auth requests "
        "of nginx, Caddy, Traefik or Envoy; no upstream).",
    )
    upstream: str = _opt(
        "",
        "Base URL of the protected service (required in `proxy` mode), e.g. http://127.0.0.1:9000.",
    )
    server: str = _opt(
        "gunicorn", "`gunicorn` (WSGI, `worker_class` workers) or `uvicorn` (ASGI, WebSockets)."
    )
    bind: str = _opt("127.0.0.1:8080", "HOST:PORT to listen on.")
    workers: int = _opt(2, "Worker processes.")
    threads: int = _opt(16, "Threads per gunicorn worker (gthread).")
    connect_timeout: float = _opt(5.0, "Seconds to connect to the upstream (then 504).")
    read_timeout: float = _opt(60.0, "Seconds to wait for each upstream read (then 504).")
    write_timeout: float = _opt(60.0, "Seconds to wait for each upstream write.")
    pool_timeout: float = _opt(5.0, "Seconds to wait for a free pooled upstream connection.")
    max_connections: int = _opt(100, "Upstream connections per worker process.")
    max_keepalive_connections: int = _opt(100, "Idle upstream connections kept per worker.")
    access_log: bool = _opt(True, "Write one JSON access-log line per request to stderr.")
    metrics: bool = _opt(True, "Serve Prometheus metrics on /_licensechain/metrics.")
    forwarded_headers: bool = _opt(
        True, "Add X-Forwarded-For/-Proto/-Host for the upstream (replacing inbound ones)."
    )
    graceful_timeout: float = _opt(30.0, "Seconds workers get to finish requests on shutdown.")
    worker_class: str = _opt(
        "gevent",
        "gunicorn workers: `gevent` (a greenlet per connection: slow clients hold no thread) "
        "or `gthread` (a thread per request in flight; only behind a buffering proxy).",
    )
    header_timeout: float = _opt(
        10.0,
        "Seconds a client has for a request's head, counted from the end of the previous "
        "response or from connecting (gunicorn; then the connection is closed).",
    )
    body_timeout: float = _opt(
        10.0,
        "Seconds a client has to send a request body, plus 1 s per `body_min_rate` bytes "
        "received; then 408.",
    )
    body_min_rate: float = _opt(
        1024.0, "Bytes per second a request body must keep up to never time out."
    )
    body_buffer_bytes: int = _opt(
        1048576, "Bytes of a request body read before the upstream is contacted."
    )
    allow_get_body: bool = _opt(
        False,
        "Forward a request body on GET, HEAD, OPTIONS and TRACE; off: 400 (RFC 9110 9.3: "
        "no meaning there, and a smuggling vector).",
    )
    reuse_upstream_after_body: bool = _opt(
        False,
        "Reuse an upstream connection after a request with a body; off: `Connection: close`. "
        "Only for upstreams that always read or discard bodies.",
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GatewayConfigError(f"[gateway] mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "proxy" and not self.upstream:
            raise GatewayConfigError("[gateway] upstream is required (the URL of the service)")
        if self.upstream:
            try:
                UpstreamBase(self.upstream)
            except ValueError as exc:
                raise GatewayConfigError(f"[gateway] upstream: {exc}") from None
        if self.worker_class not in WORKER_CLASSES:
            raise GatewayConfigError(
                f"[gateway] worker_class must be one of {WORKER_CLASSES}, got {self.worker_class!r}"
            )
        if self.server not in SERVERS:
            raise GatewayConfigError(
                f"[gateway] server must be one of {SERVERS}, got {self.server!r}"
            )
        host, _, port = self.bind.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise GatewayConfigError(f"[gateway] bind must be HOST:PORT, got {self.bind!r}")
        for name in ("workers", "threads", "max_connections", "body_buffer_bytes"):
            if getattr(self, name) < 1:
                raise GatewayConfigError(f"[gateway] {name} must be at least 1")
        for f in dataclasses.fields(self):
            if f.type == "float":
                try:
                    check_positive(getattr(self, f.name), f.name)
                except ConfigError:  # nan and inf too: a deadline that is never reached
                    raise GatewayConfigError(f"[gateway] {f.name} must be positive") from None

    @property
    def upstream_base(self) -> UpstreamBase:
        return UpstreamBase(self.upstream)

    @property
    def limits(self) -> UpstreamLimits:
        return UpstreamLimits(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            write_timeout=self.write_timeout,
            pool_timeout=self.pool_timeout,
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive_connections,
        )

    @property
    def bodies(self) -> BodyPolicy:
        return BodyPolicy(
            allow_get_body=self.allow_get_body,
            reuse_upstream_after_body=self.reuse_upstream_after_body,
            timeout=self.body_timeout,
            min_rate=self.body_min_rate,
            buffer_bytes=self.body_buffer_bytes,
        )

    @classmethod
    def from_table(cls, table: Mapping[str, Any], env: Mapping[str, str]) -> GatewaySettings:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise GatewayConfigError(
                f"[gateway] unknown key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(fields))})"
            )
        values: dict[str, Any] = {}
        for name, f in fields.items():
            env_key = ENV_PREFIX + name.upper()
            if env_key in env:
                values[name] = _coerce(f, env[env_key], env_key)
            elif name in table:
                values[name] = _check_type(f, table[name])
        return cls(**values)


def _check_type(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = str(f.type)
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
    }[kind]
    if not ok:
        raise GatewayConfigError(f"[gateway] {f.name} must be a {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def _coerce(f: dataclasses.Field[Any], text: str, env_key: str) -> Any:
    return parse_env_value(str(f.type), text, env_key)


def parse_env_value(kind: str, text: str, env_key: str) -> Any:
    """An environment string as a ``bool``/``int``/``float`` (strings pass as they are),
    with the extension's rules (``flask_licensechain/core/options.py``)."""
    parse = _PARSERS.get(kind)
    if parse is None:
        return text
    try:
        return parse(text, env_key)
    except ConfigError as exc:
        raise GatewayConfigError(str(exc)) from None


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "bool": parse_bool,
    "int": parse_int,
    "float": parse_float,
}


def settings_table() -> str:
    """The README's table of ``[gateway]`` keys."""
    rows = ["| key | env | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(GatewaySettings):
        env = ENV_PREFIX + f.name.upper()
        rows.append(f"| `{f.name}` | `{env}` | `{f.default!r}` | {f.metadata['doc']} |")
    return "\n".join(rows)
