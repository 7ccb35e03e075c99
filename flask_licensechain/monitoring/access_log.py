"""Structured access logs: one JSON line per request, on the ``licensechain.access`` logger.

Opt-in (``LICENSECHAIN_ACCESS_LOG``). Formatted by python-json-logger. Each line carries
``request_id``, ``route`` (the route template, e.g. ``/v1/licenses/<lc_license:ref>``, never
the path as sent: license keys travel in paths), ``method``, ``status``, ``latency_ms`` and
``actor_id`` (the authenticated API key's id, else null). Nothing else of the request is
read: no header, no query string, no body, so no API key, license key or token can reach a
line.

When the logger has no handler of its own, one is added that writes JSON lines to stderr
(and the logger stops propagating, so a root handler does not print each line twice).
Configure ``licensechain.access`` yourself (any handler, any formatter) to send the lines
elsewhere: the fields are passed as the record's extras.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from pythonjsonlogger.json import JsonFormatter

LOGGER_NAME: Final = "licensechain.access"
log = logging.getLogger(LOGGER_NAME)
FIELDS: Final = ("request_id", "route", "method", "status", "latency_ms", "actor_id")


def json_formatter() -> logging.Formatter:
    """Timestamp, level, message and the record's extras as one JSON object per line."""
    return JsonFormatter(
        "{asctime}{levelname}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level"},
    )


def enable() -> None:
    """Make ``licensechain.access`` emit INFO lines (with a JSON stderr handler unless one
    was configured)."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(json_formatter())
        log.addHandler(handler)
        log.propagate = False
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)


def log_request(**fields: Any) -> None:
    """One access line with ``fields`` (``FIELDS``)."""
    log.info("request", extra=fields)
