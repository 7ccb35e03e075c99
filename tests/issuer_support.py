"""Helpers for the issuer/API tests: an issuer app on a chosen store, admin keys, snapshots."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_licensechain import IssuerState, LicenseChain
from flask_licensechain.store import AppRecord, LicenseRecord
from flask_licensechain.store.schema import metadata

#: A fixed AES-256 key for the tests (PostgreSQL stores need one).
TEST_ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
#: Generous limits: only the rate-limit tests want to hit them.
NO_LIMITS = {"ratelimit_enabled": False}


_BOOKKEEPING = ("last_used_at", "last_used_ip", "usage_count")


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store on ``engine`` (``Issuer.snapshot``)."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.c if c.name not in _BOOKKEEPING]
            result = conn.execute(sa.select(*columns)).all()
            rows[table.name] = sorted(
                tuple(json.dumps(v, default=str) for v in row) for row in result
            )
    return rows


@dataclass
class Issuer:
    app: Flask
    client: FlaskClient
    state: IssuerState
    admin_key: str

    @property
    def store(self) -> Any:
        assert self.state.store is not None
        return self.state.store

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def api_key(self, *scopes: str) -> str:
        _, plaintext = self.store.api_keys.create("test key", list(scopes))
        return str(plaintext)

    def new_app(self, tier: str = "pro", name: str = "Demo App") -> AppRecord:
        app: AppRecord = self.store.apps.create(name, tier=tier)
        return app

    def new_license(self, app_id: str | None = None, **fields: Any) -> LicenseRecord:
        if app_id is None:
            app_id = self.new_app().id
        lic: LicenseRecord = self.store.licenses.create(app_id, **fields)
        return lic

    def post(self, path: str, body: Any = None, **kwargs: Any) -> TestResponse:
        if body is not None:
            kwargs["json"] = body
        return self.client.post(path, **kwargs)

    def verify(self, **body: Any) -> TestResponse:
        return self.client.post("/v1/licenses/verify", json=body)

    def token_for(self, key: str, **body: Any) -> str:
        response = self.verify(key=key, **body)
        assert response.status_code == 200, response.get_json()
        data = response.get_json()
        assert data["valid"] is True, data
        return str(data["license_token"])

    def introspect(self, token: str) -> dict[str, Any]:
        response = self.client.post("/v1/licenses/introspect", json={"license_token": token})
        assert response.status_code == 200, response.get_json()
        data: dict[str, Any] = response.get_json()
        return data

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: compare before and after a failed request.

        ``lc_api_keys``' usage columns are left out: authenticating records them (bookkeeping,
        written in batches by a timer).
        """
        return snapshot(self.store.engine)


def make_issuer(tmp_path: Path, database_url: str | None = None, **options: Any) -> Issuer:
    app = Flask("issuer_test", instance_path=str(tmp_path / "instance"))
    app.testing = True
    settings = {**NO_LIMITS, **options}
    if database_url is not None:
        settings.setdefault("database_url", database_url)
    if database_url is not None and not database_url.startswith("sqlite"):
        settings.setdefault("encryption_key", TEST_ENCRYPTION_KEY)
    LicenseChain(app, **settings)
    state: IssuerState = app.extensions["licensechain"]
    assert state.store is not None
    _, admin = state.store.api_keys.create("admin", ["*"])
    return Issuer(app=app, client=app.test_client(), state=state, admin_key=admin)


def close_issuer(issuer: Issuer) -> None:
    issuer.store.dispose()
    issuer.state.denylist.close()


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims


def error_body(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """Assert the contract error body and headers; return the body."""
    assert response.status_code == status, (response.status_code, response.get_data())
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"error", "message", "request_id"}, body
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body
