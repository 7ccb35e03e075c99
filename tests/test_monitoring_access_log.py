"""The JSON access log (monitoring/access_log.py): one line per request, opt-in, no secrets.

- Off by default: no line.
- On: each request writes exactly one JSON object with the request id (the one the response
  carries), the route template, method, status, latency and the API key's id as actor.
- A request carrying an API key (header) and a license key (body, query and path) and a
  license token writes a line that contains none of them.
- Without a handler configured for ``licensechain.access``, the lines go to stderr as JSON.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from gate_support import issuer_app_with

from flask_licensechain import get_state
from flask_licensechain.monitoring import access_log


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """The access logger's output, JSON-formatted, for one test."""
    logger = logging.getLogger(access_log.LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(access_log.json_formatter())
    logger.handlers = [handler]
    logger.setLevel(logging.NOTSET)
    try:
        yield stream
    finally:
        logger.handlers, level, logger.propagate = saved[0], saved[1], saved[2]
        logger.setLevel(level)


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _app(tmp_path: Path, **config: Any) -> Flask:
    return issuer_app_with(tmp_path, gated=False, **config)


def test_off_by_default(tmp_path: Path, lines: io.StringIO) -> None:
    app = _app(tmp_path)
    app.test_client().get("/v1/health")
    assert lines.getvalue() == ""


def test_one_line_per_request_without_secrets(tmp_path: Path, lines: io.StringIO) -> None:
    app = _app(tmp_path, LICENSECHAIN_ACCESS_LOG=True)
    store = get_state(app).store
    assert store is not None
    seller = store.apps.create("Logs " + secrets.token_hex(3), tier="pro")
    lic = store.licenses.create(seller.id, issued_email="buyer@example.com")
    key_record, api_key = store.api_keys.create("log test", ["*"])
    client = app.test_client()
    verified = client.post(
        "/v1/licenses/verify?key=" + lic.key,
        json={"key": lic.key, "hwuid": "hw-secret-device"},
        headers={"Authorization": f"Bearer {api_key}", "User-Agent": "agent/1"},
    )
    token = verified.get_json()["license_token"]
    shown = client.get(f"/v1/licenses/{lic.key}", headers={"Authorization": f"Bearer {api_key}"})
    refused = client.post(
        "/v1/licenses/revoke-token",
        json={"license_token": token},
        headers={"Authorization": "Bearer lc_live_" + "x" * 40},
    )
    assert (verified.status_code, shown.status_code, refused.status_code) == (200, 200, 401)

    text = lines.getvalue()
    for secret in (api_key, lic.key, token, "x" * 40, "hw-secret-device", "buyer@example.com"):
        assert secret not in text
    records = _records(lines)
    assert len(records) == 3
    first, second, third = records
    assert first["request_id"] == verified.headers["X-Request-ID"]
    assert first["route"] == "/v1/licenses/verify"
    assert (first["method"], first["status"], first["actor_id"]) == ("POST", 200, None)
    assert isinstance(first["latency_ms"], float) and first["latency_ms"] >= 0
    assert second["route"] == "/v1/licenses/<lc_license:ref>"
    assert second["actor_id"] == key_record.id
    assert (third["status"], third["actor_id"]) == (401, None)
    assert {"time", "level", "message"} <= set(first)


def test_default_handler_writes_json_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger(access_log.LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers = []
    try:
        app = _app(tmp_path, LICENSECHAIN_ACCESS_LOG=True)
        app.test_client().get("/v1/health")
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        record = json.loads(err[0])
        assert (record["route"], record["status"]) == ("/v1/health", 200)
    finally:
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
