"""TOML files for the gateway tests."""

from __future__ import annotations

import uuid
from pathlib import Path

from .tokens import AUDIENCE, ISSUER

#: The rules most tests use: an open area, a licensed area, a feature area, a limited area.
DEFAULT_RULES = """
[[rules]]
path = "/public/**"
public = true

[[rules]]
path = "/premium/**"
features = ["premium"]

[[rules]]
path = "/limited/**"
rate_limit = "5/minute"
"""


def write_config(
    directory: Path,
    *,
    upstream: str,
    jwks_file: Path | None = None,
    gate: str = "",
    gateway: str = "",
    rules: str = DEFAULT_RULES,
    name: str = "gateway.toml",
    read_timeout: float = 2.0,
) -> Path:
    """A gateway config; ``gate``/``gateway`` are extra TOML lines for each part."""
    key_source = f'jwks_file = "{jwks_file}"' if jwks_file is not None else ""
    text = f"""
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
{key_source}
ratelimit_key_prefix = "lcgwtest{uuid.uuid4().hex[:12]}"
{gate}
{rules}

[gateway]
upstream = "{upstream}"
read_timeout = {read_timeout}
{gateway}
"""
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
