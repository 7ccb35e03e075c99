"""Reading request bodies and fields: size, media type, JSON, and typed fields with aliases.

Everything a client can get wrong ends in a contract error (400, 413 or 415), never a 500:
deep nesting, NaN, huge numbers, bad UTF-8 and non-object bodies included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from flask import Request, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from ..core.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from ..serialize import parse_timestamp

_ENVIRON_BODY: Final = "licensechain.json_body"
_MISSING: Final = object()


#: a JSON ``\\uD800``-``\\uDFFF`` escape: only then can a decoded string hold a lone surrogate
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in ``value`` cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: built once: ``json.loads(..., parse_constant=...)`` would build a decoder per call
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def read_json_body(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body), parsed once per request."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    environ = req.environ
    cached: dict[str, Any] | None = environ.get(_ENVIRON_BODY)
    if cached is not None:
        return cached
    raw = _read_body(req, max_bytes)
    if not raw:
        body: dict[str, Any] = {}
    else:
        # application/json or application/*+json (Werkzeug's ``is_json`` rule, without
        # parsing the header's parameters, which the body's decoding ignores)
        mimetype = (req.content_type or "").partition(";")[0].strip().lower()
        if mimetype != "application/json" and not (
            mimetype.startswith("application/") and mimetype.endswith("+json")
        ):
            raise UnsupportedMediaType()
        try:
            # UTF-8 only (RFC 8259); a bad byte is a UnicodeDecodeError, a ValueError.
            parsed = _DECODER.decode(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise InvalidRequest("The request body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(parsed):
            raise InvalidRequest("The request body contains an unpaired UTF-16 surrogate.")
        body = parsed
    environ[_ENVIRON_BODY] = body
    return body


def _read_body(req: Request, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of body, else ``PayloadTooLarge``. Werkzeug reads and caches it,
    so the host app can still read it (before or after us)."""
    # One byte past the limit tells "exactly at the limit" from "over it": without a
    # Content-Length, Werkzeug stops quietly at its maximum.
    req.max_content_length = max_bytes + 1
    try:
        raw = req.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge() from None
    except ClientDisconnected:
        raise InvalidRequest("The request body is shorter than its Content-Length.") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge()
    return raw


def peek_json_body(max_bytes: int) -> dict[str, Any] | None:
    """The body when it parses, else ``None`` (the view reports the error properly)."""
    try:
        return read_json_body(max_bytes)
    except (InvalidRequest, PayloadTooLarge, UnsupportedMediaType):
        return None


class Fields:
    """Typed access to a JSON object's members, each under its accepted names (aliases).

    ``None`` (JSON null) counts as absent for optional members.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def raw(self, *names: str) -> Any:
        """The value under the first of ``names`` present, else a private missing marker."""
        for name in names:
            if name in self._data:
                return self._data[name]
        return _MISSING

    def present(self, *names: str) -> bool:
        """Whether any of ``names`` is a member (JSON null included)."""
        return self.raw(*names) is not _MISSING

    def string(
        self, *names: str, required: bool = False, max_length: int = 256, allow_empty: bool = False
    ) -> str | None:
        """A string of at most ``max_length`` characters without NUL, or ``None`` when absent.

        An empty string counts as absent unless ``allow_empty``. Raises ``InvalidRequest``
        for another type, a longer string, a NUL, or a missing ``required`` member.
        """
        value = self.raw(*names)
        if value is _MISSING or value is None:
            if required:
                raise InvalidRequest(f"'{names[0]}' is required.")
            return None
        if not isinstance(value, str):
            raise InvalidRequest(f"'{names[0]}' must be a string.")
        if not value and not allow_empty:
            if required:
                raise InvalidRequest(f"'{names[0]}' must not be empty.")
            return None
        if len(value) > max_length:
            raise InvalidRequest(f"'{names[0]}' is longer than {max_length} characters.")
        if "\x00" in value:
            raise InvalidRequest(f"'{names[0]}' must not contain NUL characters.")
        return value

    def required_string(self, *names: str, max_length: int = 256) -> str:
        """As ``string(required=True)``: a non-empty string, else ``InvalidRequest``."""
        value = self.string(*names, required=True, max_length=max_length)
        assert value is not None
        return value

    def boolean(self, *names: str) -> bool | None:
        """A JSON boolean, or ``None`` when absent; ``InvalidRequest`` for another type."""
        value = self.raw(*names)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, bool):
            raise InvalidRequest(f"'{names[0]}' must be a boolean.")
        return value

    def integer(self, *names: str, minimum: int, maximum: int) -> int | None:
        """An integer in ``minimum..maximum`` (not a boolean), or ``None``; else
        ``InvalidRequest``."""
        value = self.raw(*names)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"'{names[0]}' must be an integer.")
        if not minimum <= value <= maximum:
            raise InvalidRequest(f"'{names[0]}' must be between {minimum} and {maximum}.")
        return value

    def string_list(
        self, *names: str, max_items: int = 256, max_length: int = 128
    ) -> list[str] | None:
        """At most ``max_items`` non-empty strings of at most ``max_length`` characters,
        duplicates dropped (order kept), or ``None`` when absent; else ``InvalidRequest``."""
        value = self.raw(*names)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidRequest(f"'{names[0]}' must be a list of strings.")
        if len(value) > max_items:
            raise InvalidRequest(f"'{names[0]}' has more than {max_items} items.")
        if any(not v or len(v) > max_length for v in value):
            raise InvalidRequest(
                f"'{names[0]}' items must be non-empty and at most {max_length} characters."
            )
        return list(dict.fromkeys(value))  # de-duplicated, order kept

    def obj(self, *names: str, max_bytes: int = 16384) -> dict[str, Any] | None:
        """A JSON object of at most ``max_bytes`` bytes as JSON, or ``None``; else
        ``InvalidRequest``."""
        value = self.raw(*names)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidRequest(f"'{names[0]}' must be an object.")
        try:
            size = len(json.dumps(value))
        except (ValueError, RecursionError):
            raise InvalidRequest(f"'{names[0]}' cannot be stored.") from None
        if size > max_bytes:
            raise InvalidRequest(f"'{names[0]}' is larger than {max_bytes} bytes.")
        return value

    def timestamp(self, *names: str) -> datetime | None:
        """An ISO 8601 date-time (a naive one is UTC) or unix seconds."""
        value = self.raw(*names)
        if value is _MISSING or value is None:
            return None
        return parse_timestamp(value, names[0])

    def unknown(self, known: set[str]) -> list[str]:
        """The member names not in ``known``, sorted."""
        return sorted(set(self._data) - known)


def reject_unknown(fields: Fields, known: set[str]) -> None:
    """Raise ``InvalidRequest`` naming (up to five of) the members not in ``known``."""
    unknown = fields.unknown(known)
    if unknown:
        shown = ", ".join(repr(u[:40]) for u in unknown[:5])
        raise InvalidRequest(f"Unknown field(s): {shown}.")
