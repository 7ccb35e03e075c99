"""Input checks shared by the repositories.

The store is the last line before the database: a value it accepts must be storable the same
way on SQLite and PostgreSQL (PostgreSQL refuses NUL characters, NaN in JSON, integers out of
range), so a bad value becomes ``InvalidRequest`` here instead of a driver error later.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from .. import field_limits as limits
from ..core.errors import InvalidRequest
from .schema import to_utc

#: an origin as a browser sends it (RFC 6454): scheme, host, optional port, nothing else
_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


def new_id(prefix: str) -> str:
    """``<prefix>_<24 hex>``: 96 random bits."""
    return f"{prefix}_{secrets.token_hex(12)}"


def is_lookup(value: object) -> TypeGuard[str]:
    """Whether ``value`` can name a stored row; anything else simply matches nothing."""
    return isinstance(value, str) and len(value) <= limits.LOOKUP and "\x00" not in value


def text(value: object, name: str, *, max_length: int = limits.NAME) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string.")
    if "\x00" in value:
        raise InvalidRequest(f"{name} must not contain NUL characters.")
    if len(value) > max_length:
        raise InvalidRequest(f"{name} must be at most {max_length} characters.")
    return value


def required_text(value: object, name: str, *, max_length: int = limits.NAME) -> str:
    result = text(value, name, max_length=max_length)
    if not result.strip():
        raise InvalidRequest(f"{name} must not be empty.")
    return result


def optional_text(value: object, name: str, *, max_length: int = limits.NAME) -> str | None:
    return None if value is None else text(value, name, max_length=max_length)


def integer(value: object, name: str, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer.")
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{name} must be between {minimum} and {maximum}.")
    return value


def boolean(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean.")
    return value


def optional_datetime(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidRequest(f"{name} must be a datetime.")
    return to_utc(value)


def features(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidRequest("features must be a list of strings.")
    items = tuple(value)
    if len(items) > limits.FEATURES:
        raise InvalidRequest(f"features must have at most {limits.FEATURES} entries.")
    result: list[str] = []
    for item in items:
        feature = required_text(item, "each feature", max_length=limits.FEATURE)
        if feature not in result:  # keep the order, drop duplicates
            result.append(feature)
    return tuple(result)


def _depth(value: object) -> int:
    """How deep ``value``'s objects and arrays nest (1 for a flat object), without
    recursion: a hostile value cannot exhaust the stack here."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limits.METADATA_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def metadata(value: object, name: str = "metadata") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{name} must be an object.")
    data = dict(value)
    if _depth(data) > limits.METADATA_DEPTH:
        raise InvalidRequest(f"{name} must nest at most {limits.METADATA_DEPTH} levels deep.")
    try:
        encoded = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidRequest(f"{name} must be plain JSON (no NaN or Infinity).") from error
    if len(encoded.encode()) > limits.METADATA_BYTES:
        raise InvalidRequest(f"{name} must be at most {limits.METADATA_BYTES} bytes as JSON.")
    return data


def webhook_url(value: object, name: str = "webhook_url") -> str | None:
    """An absolute ``http``/``https`` URL without credentials, or ``None``."""
    if value is None:
        return None
    url = text(value, name, max_length=limits.WEBHOOK_URL).strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        raise InvalidRequest(f"{name} must be an absolute http(s) URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise InvalidRequest(f"{name} must be an absolute http(s) URL.")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(f"{name} must not carry credentials.")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise InvalidRequest(f"{name} must not contain blanks or control characters.")
    return url


def origin(value: object, name: str = "allowed_origins") -> str:
    """One web origin, normalized: lower case, no default port (``https://shop.example``).

    An origin is what browsers send in the ``Origin`` header (RFC 6454): a scheme, a host and
    an optional port; a path, query, credentials or the wildcard ``*`` is refused.
    """
    raw = text(value, f"each of {name}", max_length=limits.ORIGIN).strip().lower().rstrip("/")
    match = _ORIGIN.fullmatch(raw)
    if match is None:
        raise InvalidRequest(
            f"each of {name} must be an origin like https://shop.example or "
            "http://localhost:3000 (scheme, host and port only)."
        )
    scheme, host, port = match.groups()
    if port is not None:
        number = int(port[1:])
        if not 0 < number < 65536:
            raise InvalidRequest(f"each of {name} must have a port between 1 and 65535.")
        if (scheme, number) in (("http", 80), ("https", 443)):
            port = None
        else:
            port = f":{number}"
    return f"{scheme}://{host}{port or ''}"


def origins(value: object, name: str = "allowed_origins") -> tuple[str, ...]:
    """A list of origins (see ``origin``), normalized and de-duplicated; ``None`` is empty."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidRequest(f"{name} must be a list of origins.")
    items = tuple(value)
    if len(items) > limits.ORIGINS:
        raise InvalidRequest(f"{name} must have at most {limits.ORIGINS} entries.")
    return tuple(dict.fromkeys(origin(item, name) for item in items))
