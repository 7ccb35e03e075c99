"""One normalised, once-decoded request path: the one rules match and the one forwarded.

Servers hand the gate a path that is already percent-decoded once (WSGI
``PATH_INFO``, ASGI ``path``). The gate never decodes again. It then:

* refuses (400) what could mean one thing to the gate and another downstream:
  a ``%`` left after decoding (double encoding), ``;`` path parameters (``..;``
  is ``..`` to some servers), ``\\``, ``#`` and ``?`` (they were ``%23``/``%3F``),
  control characters, and -- when the raw path is known -- encoded ``/`` or ``\\``;
* normalises the rest: ``//`` becomes ``/``, ``.`` segments go, ``..`` removes
  the segment before it (never above the root), per RFC 3986 section 5.2.4.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

from flask_licensechain.core.errors import InvalidRequest

#: Anything that needs a closer look; a path without these is already normal.
_NEEDS_WORK: Final = re.compile(r"//|/\.|[%;\\#?\x00-\x1f\x7f]")
_REFUSED: Final = re.compile(r"[%;\\#?\x00-\x1f\x7f]")
_ENCODED_SEPARATOR: Final = re.compile(r"%(?:2f|5c)", re.IGNORECASE)
#: Characters kept verbatim when the normalised path is re-encoded for ``raw_path``.
_PATH_SAFE: Final = "/:@!$&'()*+,=-._~"


class BadPath(InvalidRequest):
    description = "The request path is not acceptable."

    def __init__(self, detail: str) -> None:
        super().__init__(reason="bad_path", detail=detail)


def normalise_path(path: str) -> str:
    """The normalised form of a decoded path, or ``BadPath``."""
    if not path:
        return "/"
    if path[0] != "/":
        raise BadPath("path does not start with '/'")
    if _NEEDS_WORK.search(path) is None:
        return path
    found = _REFUSED.search(path)
    if found is not None:
        raise BadPath(f"path holds a refused character {found.group()!r}")
    out: list[str] = []
    for segment in path[1:].split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    last = path.rsplit("/", 1)[1]
    trailing = last in ("", ".", "..")
    if not out:
        return "/"
    return "/" + "/".join(out) + ("/" if trailing else "")


def check_raw_path(raw: str) -> None:
    """Refuse an encoded ``/`` or ``\\`` in the raw (still encoded) path."""
    if "%" in raw and _ENCODED_SEPARATOR.search(raw) is not None:
        raise BadPath("path holds an encoded '/' or '\\'")


def raw_path_of(raw_uri: str) -> str:
    """The path part of a request-target (origin or absolute form), query removed."""
    path = raw_uri.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        scheme, sep, rest = path.partition("://")
        if sep and scheme.isalpha():
            slash = rest.find("/")
            path = rest[slash:] if slash >= 0 else "/"
    return path


def encode_path(path: str) -> str:
    """Percent-encode a normalised path for a raw request-target."""
    return quote(path, safe=_PATH_SAFE)
