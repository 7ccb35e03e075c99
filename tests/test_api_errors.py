"""Bad input across the whole API: contract error bodies, the right status, never a 500,
and the store exactly as it was after every failed request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from issuer_support import (
    Issuer,
    close_issuer,
    error_body,
    make_issuer,
)

from flask_licensechain import LicenseChain

pytest_plugins = ["issuer_fixtures"]  # the issuer fixtures

#: (method, path template, public?) of every endpoint that reads a JSON body
BODY_ENDPOINTS = [
    ("POST", "/v1/licenses/verify", True),
    ("POST", "/v1/licenses/validate-hardware", True),
    ("POST", "/v1/licenses/introspect", True),
    ("POST", "/v1/licenses/revoke-token", False),
    ("POST", "/v1/apps", False),
    ("POST", "/v1/apps/{app}/licenses", False),
    ("PATCH", "/v1/licenses/{lic}", False),
    ("PATCH", "/v1/licenses/{lic}/revoke", False),
    ("PATCH", "/v1/licenses/{lic}/suspend", False),
    ("PATCH", "/v1/licenses/{lic}/activate", False),
    ("PATCH", "/v1/licenses/{lic}/extend", False),
    ("POST", "/v1/api-keys", False),
]

MALFORMED_BODIES: list[tuple[str, bytes]] = [
    ("truncated", b'{"key": "LC-'),
    ("not json", b"key=LC-AAAAAA"),
    ("trailing garbage", b'{"key": "x"} {}'),
    ("NaN", b'{"key": NaN}'),
    ("Infinity", b'{"maxDevices": Infinity}'),
    ("bad utf-8", b'{"key": "\xff\xfe"}'),
    ("deep nesting", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ("huge integer", b'{"maxDevices": ' + b"9" * 5000 + b"}"),
    ("lone surrogate", b'{"key": "\\ud800"}'),
]
NON_OBJECT_BODIES = [b"[]", b'["key"]', b'"LC-AAAAAA-AAAAAA-AAAAAA"', b"42", b"null", b"true"]
WRONG_TYPES: dict[str, list[dict[str, Any]]] = {
    "/v1/licenses/verify": [
        {"key": 5},
        {"key": None},
        {"licenseKey": ["LC"]},
        {"key": {"$ne": ""}},
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA", "hwuid": 1},
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA", "appId": True},
        {"key": "x" * 257},
        {"key": "LC-\u0000"},
        {},
    ],
    "/v1/licenses/validate-hardware": [
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA"},
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA", "hwuid": ""},
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA", "hardwareId": 7},
        {"key": "LC-AAAAAA-AAAAAA-AAAAAA", "hwuid": "h" * 257},
    ],
    "/v1/licenses/introspect": [{"token": 1}, {"license_token": {"a": 1}}, {}],
}


@pytest.fixture
def hostile(tmp_path: Path, database_url: str) -> Iterator[tuple[Issuer, dict[str, str]]]:
    made = make_issuer(tmp_path, database_url, max_body_bytes=4096)
    lic = made.new_license(max_devices=1)
    made.verify(key=lic.key, hwuid="m1")  # a device, so device rows are in the snapshot too
    try:
        yield made, {"app": lic.app_id, "lic": lic.id}
    finally:
        close_issuer(made)


def _send(
    issuer: Issuer, method: str, path: str, public: bool, data: bytes, content_type: str
) -> Any:
    headers = {} if public else issuer.auth()
    return issuer.client.open(
        path, method=method, data=data, content_type=content_type, headers=headers
    )


def test_malformed_and_non_object_bodies_are_400_and_change_nothing(
    hostile: tuple[Issuer, dict[str, str]],
) -> None:
    issuer, ids = hostile
    before = issuer.snapshot()
    for method, template, public in BODY_ENDPOINTS:
        path = template.format(**ids)
        for name, data in [*MALFORMED_BODIES, *(("non-object", b) for b in NON_OBJECT_BODIES)]:
            response = _send(issuer, method, path, public, data, "application/json")
            if name in ("deep nesting", "huge integer") and response.status_code == 413:
                continue  # bigger than this app's 4 KiB limit: also a contract answer
            assert response.status_code == 400, (path, name, response.get_data()[:200])
            error_body(response, 400, "invalid_request")
    assert issuer.snapshot() == before


def test_wrong_types_are_400(hostile: tuple[Issuer, dict[str, str]]) -> None:
    issuer, _ = hostile
    before = issuer.snapshot()
    for path, bodies in WRONG_TYPES.items():
        for body in bodies:
            response = issuer.post(path, body)
            assert response.status_code == 400, (path, body, response.get_json())
            error_body(response, 400, "invalid_request")
    assert issuer.snapshot() == before


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonp",
        "json",
    ],
)
def test_non_json_content_type_is_415(sqlite_issuer: Issuer, content_type: str) -> None:
    lic = sqlite_issuer.new_license()
    ids = {"app": lic.app_id, "lic": lic.id}
    before = sqlite_issuer.snapshot()
    for method, template, public in BODY_ENDPOINTS:
        response = _send(
            sqlite_issuer, method, template.format(**ids), public, b'{"key": "x"}', content_type
        )
        error_body(response, 415, "unsupported_media_type")
    assert sqlite_issuer.snapshot() == before


def test_json_with_charset_and_plus_json_are_accepted(sqlite_issuer: Issuer) -> None:
    lic = sqlite_issuer.new_license()
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = sqlite_issuer.client.post(
            "/v1/licenses/verify", data=f'{{"key": "{lic.key}"}}', content_type=content_type
        )
        assert response.status_code == 200
        assert response.get_json()["valid"] is True


def test_oversized_bodies_are_413(hostile: tuple[Issuer, dict[str, str]]) -> None:
    issuer, ids = hostile
    big = b'{"key": "' + b"A" * 5000 + b'"}'
    before = issuer.snapshot()
    for method, template, public in BODY_ENDPOINTS:
        response = _send(issuer, method, template.format(**ids), public, big, "application/json")
        error_body(response, 413, "payload_too_large")
    assert issuer.snapshot() == before


def test_oversized_chunked_body_is_413(sqlite_issuer: Issuer) -> None:
    """No Content-Length: the limit still holds while reading the stream."""
    import io

    limit = sqlite_issuer.state.settings.max_body_bytes
    body = b'{"key": "' + b"A" * (limit + 10) + b'"}'
    response = sqlite_issuer.client.post(
        "/v1/licenses/verify",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Transfer-Encoding": "chunked"},
    )
    error_body(response, 413, "payload_too_large")


def test_body_at_the_limit_is_accepted(tmp_path: Path) -> None:
    made = make_issuer(tmp_path, max_body_bytes=200)
    try:
        lic = made.new_license()
        body = f'{{"key": "{lic.key}", "pad": "'
        body += "x" * (200 - len(body) - 2) + '"}'
        assert len(body) == 200
        response = made.client.post(
            "/v1/licenses/verify", data=body, content_type="application/json"
        )
        assert response.get_json()["valid"] is True
        over = made.client.post(
            "/v1/licenses/verify", data=body + " ", content_type="application/json"
        )
        error_body(over, 413, "payload_too_large")
    finally:
        close_issuer(made)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing"),
        ("POST", "/v1/licenses/verify/extra"),
        ("GET", "/v1"),
        ("DELETE", "/v1/apps/x/y/z"),
        ("GET", "/v1/licenses/lic_x/gadgets"),
    ],
)
def test_unknown_urls_under_the_prefix_get_the_contract_404(
    sqlite_issuer: Issuer, method: str, path: str
) -> None:
    response = sqlite_issuer.client.open(path, method=method)
    error_body(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        # /licenses/<id or key> never takes the fixed paths beside it
        ("DELETE", "/v1/licenses/verify", "OPTIONS, POST"),
        ("PUT", "/v1/licenses/jwks", "GET, HEAD, OPTIONS"),
        ("PATCH", "/v1/licenses/stats", "GET, HEAD, OPTIONS"),
        ("GET", "/v1/licenses/lic_x/devices", "DELETE, OPTIONS"),
        ("POST", "/v1/health", "GET, HEAD, OPTIONS"),
        ("PUT", "/v1/licenses/lic_x/revoke", "OPTIONS, PATCH"),
        ("GET", "/v1/signing-keys/rotate", "OPTIONS, POST"),
    ],
)
def test_wrong_method_gets_the_contract_405(
    sqlite_issuer: Issuer, method: str, path: str, allowed: str
) -> None:
    response = sqlite_issuer.client.open(path, method=method)
    assert response.status_code == 405
    body = response.get_json()
    assert body["error"] == "method_not_allowed"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Allow"] == allowed


def test_host_app_keeps_its_own_404_outside_the_prefix(tmp_path: Path) -> None:
    app = Flask("host", instance_path=str(tmp_path))
    app.testing = True

    @app.errorhandler(404)
    def host_not_found(_: Exception) -> tuple[str, int]:
        return "host page", 404

    @app.get("/v1x/thing")  # shares the prefix's first characters, not the prefix
    def thing() -> str:
        return "ok"

    LicenseChain(app, ratelimit_enabled=False)
    client = app.test_client()
    assert client.get("/elsewhere").get_data() == b"host page"
    assert client.get("/v1xx").get_data() == b"host page"
    assert client.get("/v1x/thing").get_data() == b"ok"
    assert client.get("/v1/elsewhere").get_json()["error"] == "not_found"
    app.extensions["licensechain"].store.dispose()


def test_custom_prefix(tmp_path: Path) -> None:
    made = make_issuer(tmp_path, url_prefix="/api/licensing/")
    try:
        lic = made.new_license()
        response = made.client.post("/api/licensing/licenses/verify", json={"key": lic.key})
        body = response.get_json()
        assert body["license_jwks_uri"] == "http://localhost/api/licensing/licenses/jwks"
        assert made.client.get("/api/licensing/licenses/jwks").status_code == 200
        error_body(made.client.get("/api/licensing/nope"), 404, "not_found")
        assert made.client.post("/v1/licenses/verify", json={}).status_code == 404
        doc = made.client.get("/api/licensing/openapi.json").get_json()
        assert "/api/licensing/licenses/verify" in doc["paths"]
    finally:
        close_issuer(made)


@pytest.mark.parametrize(
    "segment",
    ["%00", "..%2F..%2Fetc", "%F0%9F%92%A9", "a" * 2000, "%ff%fe", "lic_x%0d%0aX-Evil:1"],
)
def test_hostile_path_segments(sqlite_issuer: Issuer, segment: str) -> None:
    auth = sqlite_issuer.auth()
    for method, template in [
        ("GET", "/v1/licenses/{x}"),
        ("GET", "/v1/apps/{x}"),
        ("GET", "/v1/apps/{x}/licenses"),
        ("PATCH", "/v1/licenses/{x}/suspend"),
        ("DELETE", "/v1/licenses/{x}/devices/{x}"),
        ("POST", "/v1/apps/{x}/licenses"),
    ]:
        response = sqlite_issuer.client.open(
            template.replace("{x}", segment), method=method, headers=auth
        )
        assert response.status_code in (400, 404), (template, segment, response.status_code)
        assert response.get_json()["error"] in ("invalid_request", "not_found")


def test_store_failure_is_503_not_500(
    sqlite_issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.exc

    lic = sqlite_issuer.new_license()

    def broken(*_: Any, **__: Any) -> Any:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(sqlite_issuer.store.licenses, "find_for_verification", broken)
    error_body(sqlite_issuer.verify(key=lic.key), 503, "unavailable")


def test_unexpected_bug_is_a_contract_500(
    sqlite_issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(sqlite_issuer.store.licenses, "find_for_verification", bug)
    response = sqlite_issuer.verify(key="LC-AAAAAA-AAAAAA-AAAAAA")
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert "oops" not in response.get_data(as_text=True)


def test_activate_puts_the_denylist_entry_back_when_the_store_fails(
    sqlite_issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_licensechain.core.errors import Unavailable

    lic = sqlite_issuer.new_license()
    token = sqlite_issuer.token_for(lic.key)
    auth = sqlite_issuer.auth()
    assert (
        sqlite_issuer.client.patch(f"/v1/licenses/{lic.id}/suspend", headers=auth).status_code
        == 200
    )
    before = sqlite_issuer.snapshot()

    def down(*_: Any, **__: Any) -> Any:
        raise Unavailable(detail="database is gone")

    monkeypatch.setattr(sqlite_issuer.store.licenses, "set_status", down)
    response = sqlite_issuer.client.patch(f"/v1/licenses/{lic.id}/activate", headers=auth)
    error_body(response, 503, "unavailable")
    assert sqlite_issuer.snapshot() == before
    assert sqlite_issuer.state.denylist.is_revoked("any-jti", lic.id, 0) is True
    assert sqlite_issuer.introspect(token)["active"] is False


def test_body_read_first_by_the_host_app_still_parses(tmp_path: Path) -> None:
    app = Flask("host_reads", instance_path=str(tmp_path))
    app.testing = True
    seen: list[bytes] = []

    @app.before_request
    def peek() -> None:
        seen.append(request.get_data())  # consumes the WSGI stream (Werkzeug caches it)

    @app.after_request
    def peek_after(response: Any) -> Any:
        seen.append(request.get_data())
        return response

    LicenseChain(app, ratelimit_enabled=False)
    state = app.extensions["licensechain"]
    try:
        lic = state.store.licenses.create(state.store.apps.create("A").id)
        body = f'{{"key": "{lic.key}"}}'.encode()
        response = app.test_client().post(
            "/v1/licenses/verify", data=body, content_type="application/json"
        )
        assert response.get_json()["valid"] is True
        assert seen == [body, body]
    finally:
        state.store.dispose()


def test_body_is_still_readable_after_the_api_parsed_it(sqlite_issuer: Issuer) -> None:
    seen: list[bytes] = []

    @sqlite_issuer.app.after_request
    def peek_after(response: Any) -> Any:
        seen.append(request.get_data())
        return response

    body = b'{"key": "LC-AAAAAA-AAAAAA-AAAAAA"}'
    response = sqlite_issuer.client.post(
        "/v1/licenses/verify", data=body, content_type="application/json"
    )
    assert response.get_json()["reason"] == "license_not_found"
    assert seen == [body]


def test_body_shorter_than_its_content_length_is_400(sqlite_issuer: Issuer) -> None:
    import io

    response = sqlite_issuer.client.post(
        "/v1/licenses/verify",
        input_stream=io.BytesIO(b'{"key": "x"}'),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": "40"},
    )
    assert "shorter" in error_body(response, 400, "invalid_request")["message"]
