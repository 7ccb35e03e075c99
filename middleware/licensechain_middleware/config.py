"""The gate's configuration: ``GateConfig`` and its ordered ``Rule`` list.

Both are frozen dataclasses validated when built, so a bad pattern, a missing
audience or an unknown key fails at start with a clear ``ConfigError``, never at
the first request. ``GateConfig.from_mapping`` takes the plain dict a TOML file
(or the gateway's environment layer) yields, with the field names as keys.

Path patterns (matched against the normalised path, see ``paths.py``):

* ``/premium/report`` -- exact; also matches the same path with one trailing ``/``.
* ``/premium/**`` -- ``/premium`` itself and everything below it (segment-aligned:
  ``/premiumX`` does not match). ``**`` may only be the last segment.
* ``/users/*/export`` -- ``*`` is exactly one non-empty segment.
* ``/**`` -- every path.

Rules are tried in order and the first whose pattern and method match wins.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from flask_licensechain.core.contract import DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES
from flask_licensechain.core.errors import ConfigError
from flask_licensechain.core.gate import (
    DEFAULT_TOKEN_COOKIE,
    DEFAULT_TOKEN_SOURCES,
    TOKEN_SOURCES,
    check_cookie_name,
    check_token_sources,
)
from flask_licensechain.core.keysource import KeySource
from flask_licensechain.core.options import (
    STORAGE_SCHEMES,
    check_audience_choice,
    check_http_url,
    check_leeway,
    check_networks,
    check_positive,
    check_rate_limit,
    check_storage_uri,
    redact_url,
)

DefaultPolicy = Literal["license", "public", "deny"]
FeaturesMode = Literal["all", "any"]

__all__ = ["STORAGE_SCHEMES", "TOKEN_SOURCES", "ConfigError", "GateConfig", "Rule"]

DEFAULT_POLICIES: Final = ("license", "public", "deny")
RATELIMIT_STRATEGIES: Final = ("moving-window", "sliding-window-counter", "fixed-window")
#: ``Rule.rate_limit`` value that exempts a rule from ``ratelimit_default``.
NO_LIMIT: Final = "none"

_METHOD = re.compile(r"^[A-Z][A-Z0-9_-]*$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,=:@-]+$")


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of the ordered rule list.

    ``features`` are required all together (``features_mode="all"``) or any one of
    them (``"any"``); ``plans`` lists the plans accepted (empty: any plan).
    ``public=True`` lets requests through without a license (a presented valid
    token still sets the identity headers). ``rate_limit`` is a ``limits`` string
    such as ``"10/second;100/minute"``; ``None`` uses the config's default and
    ``"none"`` exempts the rule from it.
    """

    path: str
    methods: tuple[str, ...] | None = None
    features: tuple[str, ...] = ()
    features_mode: FeaturesMode = "all"
    plans: tuple[str, ...] = ()
    public: bool = False
    rate_limit: str | None = None

    def __post_init__(self) -> None:
        validate_pattern(self.path)
        if self.methods is not None:
            methods = tuple(m.upper() for m in _strings(self.methods, "methods"))
            if not methods:
                raise ConfigError(f"rule {self.path!r}: methods must not be empty (omit it)")
            for m in methods:
                if not _METHOD.match(m):
                    raise ConfigError(f"rule {self.path!r}: {m!r} is not an HTTP method")
            object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "features", _strings(self.features, "features"))
        object.__setattr__(self, "plans", _strings(self.plans, "plans"))
        if self.features_mode not in ("all", "any"):
            raise ConfigError(f"rule {self.path!r}: features_mode must be 'all' or 'any'")
        if not isinstance(self.public, bool):
            raise ConfigError(f"rule {self.path!r}: public must be true or false")
        if self.public and (self.features or self.plans):
            raise ConfigError(f"rule {self.path!r}: a public rule cannot require features or plans")
        if self.rate_limit is not None:
            validate_rate_limit(self.rate_limit, f"rule {self.path!r}: rate_limit")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Rule:
        """A rule from a TOML table; ``plan`` (one string) is accepted for ``plans``."""
        if not isinstance(data, Mapping):
            raise ConfigError("each rule must be a table")
        values = dict(data)
        if "plan" in values:
            if "plans" in values:
                raise ConfigError("a rule takes 'plan' or 'plans', not both")
            plan = values.pop("plan")
            values["plans"] = [plan] if isinstance(plan, str) else plan
        if isinstance(values.get("methods"), str):
            values["methods"] = [values["methods"]]
        if isinstance(values.get("features"), str):
            values["features"] = [values["features"]]
        _reject_unknown(values, cls, where=f"rule {values.get('path', '?')!r}")
        if "path" not in values:
            raise ConfigError("every rule needs a 'path'")
        for key in ("methods", "features", "plans"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Everything the WSGI and ASGI gates need; see the module doc for patterns.

    Exactly one key source: ``jwks_url`` (fetched and cached by the core),
    ``jwks_file`` / ``jwks`` (a fixed set, air-gapped) or ``key_source`` (any
    object with the core ``KeySource`` protocol, for embedding).
    """

    issuer: str
    audience: str | tuple[str, ...] | None = None
    #: Set False to run without an audience check, on purpose; otherwise it is required.
    verify_audience: bool = True

    jwks_url: str | None = None
    jwks_file: str | None = None
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    key_source: KeySource | None = field(default=None, repr=False, compare=False)
    jwks_cache_ttl: float = 300.0
    jwks_timeout: float = 2.0
    jwks_allow_http: bool = False

    leeway: float = DEFAULT_LEEWAY
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    verified_cache_size: int = 10_000

    #: Where the token is read, in this order: ``bearer``, ``x-license-token``, ``cookie``.
    token_sources: tuple[str, ...] = DEFAULT_TOKEN_SOURCES
    token_cookie: str = DEFAULT_TOKEN_COOKIE
    #: Remove the token (its header or cookie) before the request goes downstream.
    strip_token: bool = True

    rules: tuple[Rule, ...] = ()
    #: What an unmatched path needs: ``license`` (default), ``public`` or ``deny`` (404).
    default_policy: DefaultPolicy = "license"
    #: Rules match the path case-sensitively (RFC 3986); False lowercases both sides.
    case_sensitive: bool = True

    ratelimit_storage_url: str = "memory://"
    #: A ``limits`` string applied to every rule without its own ``rate_limit``.
    ratelimit_default: str | None = None
    ratelimit_strategy: str = "moving-window"
    #: When the rate-limit store is down, count in process memory (logged); false: 503.
    ratelimit_fail_open: bool = True
    ratelimit_key_prefix: str = "lcgate"

    #: Denylist URI (``memory://``, ``redis://``...); None skips revocation checks.
    denylist_url: str | None = None
    #: When the denylist is down, let tokens through (logged). Default: fail closed (503).
    denylist_fail_open: bool = False

    #: CIDRs of proxies whose ``X-Forwarded-For`` is believed for the client IP.
    trusted_proxies: tuple[str, ...] = ()
    #: Total size of the request's header values; over it the gate answers 431.
    max_header_bytes: int = 65536
    request_id_header: str = "X-Request-ID"

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer.strip():
            raise ConfigError("issuer is required (the exact 'iss' of accepted tokens)")
        audience = self.audience
        if isinstance(audience, (list, tuple)):
            audience = _strings(audience, "audience")
            object.__setattr__(self, "audience", audience or None)
        elif audience is not None and (not isinstance(audience, str) or not audience):
            raise ConfigError("audience must be a non-empty string or a list of strings")
        check_audience_choice(self.audience, self.verify_audience)
        sources = [
            name
            for name in ("jwks_url", "jwks_file", "jwks", "key_source")
            if getattr(self, name) is not None
        ]
        if len(sources) != 1:
            raise ConfigError(
                "exactly one key source is needed: jwks_url, jwks_file, jwks or key_source"
                + (f" (got {', '.join(sources)})" if sources else "")
            )
        if self.jwks_url is not None:
            check_http_url(self.jwks_url, "jwks_url")
        check_positive(self.jwks_cache_ttl, "jwks_cache_ttl")
        check_positive(self.jwks_timeout, "jwks_timeout")
        check_leeway(self.leeway)
        check_positive(self.max_token_bytes, "max_token_bytes")
        if (
            isinstance(self.verified_cache_size, bool)
            or not isinstance(self.verified_cache_size, int)
            or self.verified_cache_size < 0
        ):
            raise ConfigError("verified_cache_size must be an integer >= 0")
        object.__setattr__(self, "token_sources", check_token_sources(self.token_sources))
        check_cookie_name(self.token_cookie)

        rules = tuple(r if isinstance(r, Rule) else Rule.from_mapping(r) for r in self.rules)
        object.__setattr__(self, "rules", rules)
        if self.default_policy not in DEFAULT_POLICIES:
            raise ConfigError(f"default_policy must be one of {', '.join(DEFAULT_POLICIES)}")

        check_storage_uri(self.ratelimit_storage_url, "ratelimit_storage_url")
        if self.ratelimit_default is not None:
            validate_rate_limit(self.ratelimit_default, "ratelimit_default")
        if self.ratelimit_strategy not in RATELIMIT_STRATEGIES:
            raise ConfigError(
                f"ratelimit_strategy must be one of {', '.join(RATELIMIT_STRATEGIES)}"
            )
        if not re.match(r"^[A-Za-z0-9:_.-]{1,64}$", self.ratelimit_key_prefix):
            raise ConfigError("ratelimit_key_prefix must be 1-64 characters of [A-Za-z0-9:_.-]")
        if self.denylist_url is not None:
            check_storage_uri(self.denylist_url, "denylist_url")

        proxies = check_networks(
            _strings(self.trusted_proxies, "trusted_proxies"), "trusted_proxies"
        )
        object.__setattr__(self, "trusted_proxies", proxies)
        check_positive(self.max_header_bytes, "max_header_bytes")
        if not re.match(r"^[A-Za-z0-9-]+$", self.request_id_header):
            raise ConfigError("request_id_header must be a header name")

    def __repr__(self) -> str:
        """The fields, with the password of a storage URI replaced by ``***``."""
        shown = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name in ("denylist_url", "ratelimit_storage_url", "jwks_url") and value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"GateConfig({', '.join(shown)})"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GateConfig:
        """Build from a TOML-style dict; unknown keys and wrong types are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError("the gate configuration must be a table")
        values = dict(data)
        _reject_unknown(values, cls, where="gate", exclude=("key_source",))
        if "rules" in values:
            rules = values["rules"]
            if not isinstance(rules, list):
                raise ConfigError("rules must be a list of tables ([[rules]] in TOML)")
            values["rules"] = tuple(
                r if isinstance(r, Rule) else Rule.from_mapping(r) for r in rules
            )
        for key in ("token_sources", "trusted_proxies"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if isinstance(values.get("audience"), list):
            values["audience"] = tuple(values["audience"])
        _check_types(values, cls)
        try:
            return cls(**values)
        except TypeError as exc:  # a missing required key
            raise ConfigError(str(exc)) from None


def validate_pattern(pattern: str) -> None:
    """Raise ``ConfigError`` unless ``pattern`` follows the documented syntax."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ConfigError(f"path pattern {pattern!r} must start with '/'")
    if pattern == "/":
        return
    segments = pattern[1:].split("/")
    for i, seg in enumerate(segments):
        if seg == "**":
            if i != len(segments) - 1:
                raise ConfigError(f"path pattern {pattern!r}: '**' must be the last segment")
            continue
        if seg == "*":
            continue
        if seg == "" and i == len(segments) - 1:
            raise ConfigError(
                f"path pattern {pattern!r}: no trailing '/' (exact patterns match it anyway)"
            )
        if seg in ("", ".", "..") or not _SEGMENT.match(seg):
            raise ConfigError(
                f"path pattern {pattern!r}: segment {seg!r} is empty, a dot segment or "
                "holds characters a normalised path never has (such as % ; # ? \\ or *)"
            )


def validate_rate_limit(value: str, where: str) -> None:
    if value != NO_LIMIT:
        check_rate_limit(value, where)


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{key} must be a list of strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key} must be a list of non-empty strings")
    return tuple(value)


def _reject_unknown(
    values: Mapping[str, Any], cls: type, *, where: str, exclude: Sequence[str] = ()
) -> None:
    known = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(unknown)}")


_SCALAR_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "str": (str,),
}


def _check_types(values: Mapping[str, Any], cls: type) -> None:
    """Plain scalar fields get a type check with the key's name in the message."""
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        kind = str(f.type)
        value = values[f.name]
        if value is None and "None" in kind:
            continue
        expected = _SCALAR_TYPES.get(kind.removesuffix(" | None"))
        if expected is None:
            continue
        if (bool not in expected and isinstance(value, bool)) or not isinstance(value, expected):
            raise ConfigError(f"{f.name} must be of type {kind}")
