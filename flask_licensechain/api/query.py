"""Query-string parameters of the admin endpoints: page numbers and the app filter."""

from __future__ import annotations

from flask import request

from .. import field_limits as limits
from ..core.errors import InvalidRequest


def query_int(name: str, default: int, maximum: int) -> int:
    """The positive integer ``name`` (``default`` when absent or empty); 400 when it is not
    an integer from 1 to ``maximum``."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise InvalidRequest(f"'{name}' must be a positive integer.")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise InvalidRequest(f"'{name}' must be between 1 and {maximum}.")
    return value


def query_app_id() -> str | None:
    """The ``app_id`` (alias ``appId``) filter, ``None`` when absent; 400 when too long."""
    app_id = request.args.get("app_id") or request.args.get("appId") or None
    if app_id is not None and len(app_id) > limits.APP_ID:
        raise InvalidRequest("'app_id' is too long.")
    return app_id
