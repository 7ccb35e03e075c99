"""The options the Flask extension and the middleware share: one name, one meaning, one check.

``SHARED_OPTIONS`` documents each shared option once; ``flask_licensechain.config``
(``LICENSECHAIN_<NAME>``) and ``licensechain_middleware.config.GateConfig`` (``<name>``)
take their descriptions from it and validate with the functions below, which raise
``ConfigError`` naming the setting. Values may arrive typed (Python, TOML) or as
environment strings; the parsers accept both and nothing looser: a boolean is one of
``1/0/true/false/yes/no/on/off`` (any case), never a silent false.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .contract import MAX_LEEWAY
from .errors import ConfigError

#: name -> meaning, for the options both the extension and the gates take.
SHARED_OPTIONS: Final[Mapping[str, str]] = {
    "issuer": "The exact `iss` of license tokens: issued tokens carry it, gates accept only it.",
    "audience": "App id (or list of app ids) a gate requires in `aud`.",
    "verify_audience": (
        "`false` runs a gate without an audience check, on purpose; otherwise a gate that "
        "knows no audience refuses to start."
    ),
    "jwks_url": "Verify tokens against this JWKS URL (https; plain http only for loopback).",
    "jwks_file": "Verify tokens against this JWKS JSON file (air-gapped installs).",
    "jwks_cache_ttl": "Seconds a fetched JWKS is used when it sends no `max-age`.",
    "jwks_allow_http": "Allow a plain-http JWKS URL that is not loopback.",
    "leeway": "Clock leeway in seconds for exp/nbf/iat (0 to 300).",
    "max_token_bytes": "Tokens longer than this are refused (401 malformed) before parsing.",
    "verified_cache_size": (
        "Verified-token LRU entries per process (about 4 KiB each for a typical token; "
        "also capped at 64 MiB estimated)."
    ),
    "token_sources": (
        "Where the gate reads the token, in this order: any of `bearer`, "
        "`x-license-token`, `cookie` (a list, or comma-separated)."
    ),
    "token_cookie": (
        "Cookie name of the `cookie` source. Set it `HttpOnly; Secure; SameSite=Lax` (or "
        "`Strict`); unsafe methods authenticated by it alone must be same-origin."
    ),
    "denylist_url": "Denylist storage URI (`memory://`, `redis://`, `rediss://`, ...).",
    "denylist_fail_open": (
        "When the denylist cannot answer, let tokens through (logged). Default: refuse (503)."
    ),
    "ratelimit_storage_url": "Rate-limit storage URI for `limits` (`memory://`, `redis://`, ...).",
    "ratelimit_fail_open": (
        "When the rate-limit store cannot answer, count in this process's memory for 5 s "
        "at a time (logged) instead of answering 503."
    ),
}

BOOLEAN_TRUE: Final = frozenset({"1", "true", "yes", "on"})
BOOLEAN_FALSE: Final = frozenset({"0", "false", "no", "off"})
#: URI schemes of the ``limits``-style stores (denylist and rate limits).
STORAGE_SCHEMES: Final = (
    "memory",
    "redis",
    "rediss",
    "redis+sentinel",
    "redis+cluster",
    "redis+unix",
)
_REDIS_SCHEMES: Final = frozenset(STORAGE_SCHEMES[1:])
#: Numbers as written in ASCII; Python's int()/float() also take other scripts' digits,
#: ``_`` separators, ``nan`` and ``inf``, none of which a setting means.
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in BOOLEAN_TRUE:
            return True
        if lowered in BOOLEAN_FALSE:
            return False
    raise ConfigError(f"{key} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def parse_int(value: Any, key: str) -> int:
    """An ``int``, or a string of ASCII digits with an optional sign (spaces around)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise ConfigError(f"{key} must be an integer, got {value!r}")


def parse_float(value: Any, key: str) -> float:
    """A finite number, or a string of one in ASCII decimal notation (``1.5``, ``2e3``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return number


def check_positive(value: float, key: str) -> None:
    """A finite number above 0 (``nan`` and ``inf`` compare their own way: refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{key} must be a positive number, got {value!r}")


def check_leeway(value: float, key: str = "leeway") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number of seconds")
    if not 0 <= value <= MAX_LEEWAY:
        raise ConfigError(f"{key} must be between 0 and {MAX_LEEWAY} seconds, got {value!r}")


def check_storage_uri(uri: Any, key: str) -> str:
    """A ``memory://`` or Redis URI; a Redis one also needs redis-py installed."""
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(f"{key} must be a storage URI such as memory:// or redis://host:6379")
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in STORAGE_SCHEMES:
        raise ConfigError(f"{key}: scheme {scheme!r} is not one of {', '.join(STORAGE_SCHEMES)}")
    if scheme in _REDIS_SCHEMES:
        require_driver("redis", "redis", f"{key} {scheme}://")
    return uri


def require_driver(module: str, extra: str, what: str) -> None:
    """``ConfigError`` with the install hint when an optional driver is missing."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{what} needs the {module} package: pip install 'flask-licensechain[{extra}]'"
        )


def check_http_url(url: Any, key: str) -> str:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigError(f"{key} must be an http(s) URL, got {url!r}")
    rest = url.split("://", 1)[1]
    if not rest or rest.startswith("/"):
        raise ConfigError(f"{key} has no host: {url!r}")
    return url


def check_rate_limit(value: Any, key: str) -> str:
    """A ``limits`` string such as ``10/second;100/minute``."""
    from limits import parse_many  # the limits package loads its storages on import

    try:
        parsed = parse_many(value) if isinstance(value, str) else []
    except (ValueError, TypeError):
        parsed = []
    if not parsed:
        raise ConfigError(f"{key}: {value!r} is not a limit such as '10/second;100/minute'")
    return str(value)


def check_audience(value: Any, key: str = "audience") -> str | tuple[str, ...] | None:
    """One app id, a list of them (a comma-separated string counts), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise ConfigError(f"{key} must be a non-empty app id or a list of them")
        return items[0] if len(items) == 1 else tuple(items)
    if isinstance(value, (list, tuple)) and all(isinstance(a, str) and a for a in value):
        return tuple(value) or None
    raise ConfigError(f"{key} must be a non-empty app id or a list of them")


def audience_set(audience: str | Iterable[str] | None) -> frozenset[str]:
    if audience is None:
        return frozenset()
    return frozenset((audience,) if isinstance(audience, str) else audience)


def check_audience_choice(
    audience: Any,
    verify_audience: bool,
    *,
    audience_key: str = "audience",
    verify_key: str = "verify_audience",
) -> None:
    """A gate needs an audience unless ``verify_audience`` is off, and not both."""
    if verify_audience and not audience:
        raise ConfigError(
            f"{audience_key} is required (the app id in 'aud' this gate accepts); set "
            f"{verify_key} to false to run without an audience check on purpose"
        )
    if not verify_audience and audience:
        raise ConfigError(f"{audience_key} is set but {verify_key} is false: choose one")


def check_networks(value: Iterable[str], key: str) -> tuple[str, ...]:
    items = tuple(value)
    for cidr in items:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {cidr!r} is not an IP network") from None
    return items


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced by ``***`` (for repr and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    hidden = f"{user}:***" if colon else "***"
    return f"{scheme}://{hidden}@{host}{slash}{tail}"


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest known name (the same name in another case
    first), or an empty string."""
    names = list(known)
    same = [k for k in names if k.lower() == name.lower()]
    match = same or difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""
