"""``LICENSECHAIN_RATELIMIT_BACKEND = "flask-limiter"``: the public endpoints count through
the host app's own Flask-Limiter ``Limiter`` (its storage, headers, exemptions), and still
answer the contract's 429 (``rate_limited``, ``Retry-After``). The default stays ``limits``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from issuer_support import TEST_ENCRYPTION_KEY, error_body

from flask_licensechain import LicenseChain
from flask_licensechain.core.errors import ConfigError
from flask_licensechain.state import get_issuer_state


def _app(tmp_path: Path, limiter: Limiter | None, **options: Any) -> Flask:
    app = Flask("shared_limits", instance_path=str(tmp_path / "instance"))
    app.testing = True
    if limiter is not None:
        limiter.init_app(app)
    settings: dict[str, Any] = {
        "ratelimit_backend": "flask-limiter",
        "ratelimit_per_ip": "3/minute",
        "ratelimit_per_key": "100/minute",
        "encryption_key": TEST_ENCRYPTION_KEY,
    }
    LicenseChain(app, **{**settings, **options})
    return app


def _key(app: Flask) -> str:
    store = get_issuer_state(app).store
    lic = store.licenses.create(store.apps.create("Demo").id)
    return str(lic.key)


def _verify(app: Flask, key: str, address: str = "10.0.0.1") -> Any:
    return app.test_client().post(
        "/v1/licenses/verify", json={"key": key}, environ_base={"REMOTE_ADDR": address}
    )


def test_the_host_limiter_counts_and_the_429_is_the_contract_s(tmp_path: Path) -> None:
    limiter = Limiter(get_remote_address, storage_uri="memory://", headers_enabled=True)
    app = _app(tmp_path, limiter)
    key = _key(app)
    for _ in range(3):
        ok = _verify(app, key)
        assert ok.status_code == 200 and ok.get_json()["valid"] is True
        # The host's headers, once each (ours are not added on top).
        assert ok.headers.getlist("X-RateLimit-Limit") == ["3"]
    refused = _verify(app, key)
    body = error_body(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers.getlist("X-RateLimit-Remaining") == ["0"], body
    # Another address has its own budget.
    assert _verify(app, key, "10.0.0.2").status_code == 200
    # The counters live in the host's storage: resetting the host limiter resets ours.
    limiter.reset()
    assert _verify(app, key).status_code == 200


def test_the_host_s_exemptions_apply(tmp_path: Path) -> None:
    limiter = Limiter(get_remote_address, storage_uri="memory://")

    @limiter.request_filter
    def internal() -> bool:
        from flask import request

        return request.remote_addr == "127.0.0.9"

    app = _app(tmp_path, limiter)
    key = _key(app)
    assert all(_verify(app, key, "127.0.0.9").status_code == 200 for _ in range(6))
    assert [_verify(app, key).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_the_per_key_budget_is_shared_by_verify_and_validate_hardware(tmp_path: Path) -> None:
    limiter = Limiter(get_remote_address, storage_uri="memory://")
    app = _app(tmp_path, limiter, ratelimit_per_ip="100/minute", ratelimit_per_key="2/minute")
    key, other = _key(app), _key(app)
    client = app.test_client()
    assert _verify(app, key, "10.0.0.1").status_code == 200
    hardware = client.post(
        "/v1/licenses/validate-hardware",
        json={"key": key, "hwuid": "pc-1"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert hardware.status_code == 200
    error_body(_verify(app, key, "10.0.0.3"), 429, "rate_limited")
    assert _verify(app, other, "10.0.0.3").status_code == 200
    # A body without a key is counted per address only (then 400 for the missing key).
    assert client.post("/v1/licenses/verify", json={}).status_code == 400


def test_a_host_without_a_limiter_is_told_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"LICENSECHAIN_RATELIMIT_BACKEND.*Limiter"):
        _app(tmp_path, None)


def test_a_bad_backend_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LICENSECHAIN_RATELIMIT_BACKEND"):
        _app(tmp_path, None, ratelimit_backend="flask_limiter")


def test_the_default_backend_leaves_the_host_limiter_alone(tmp_path: Path) -> None:
    limiter = Limiter(get_remote_address, storage_uri="memory://")
    app = _app(tmp_path, limiter, ratelimit_backend="limits")
    key = _key(app)
    assert [_verify(app, key).status_code for _ in range(4)] == [200, 200, 200, 429]
    limiter.reset()  # not the host's counters: still refused
    assert _verify(app, key).status_code == 429


def test_health_probes_the_host_limiter_s_storage(tmp_path: Path) -> None:
    limiter = Limiter(get_remote_address, storage_uri="memory://")
    app = _app(tmp_path, limiter)
    answer = app.test_client().get("/v1/health").get_json()
    assert answer["checks"]["ratelimit"] == "ok"
    limiter.storage.check = lambda: False  # type: ignore[method-assign]
    down = app.test_client().get("/v1/health")
    assert down.status_code == 503 and "ratelimit" in down.get_json()["failing"]
    assert down.headers["Retry-After"]


@pytest.mark.parametrize(("swallow", "status"), [(False, 503), (True, 200)])
def test_a_dead_host_storage_follows_the_host_s_choice(
    tmp_path: Path, swallow: bool, status: int
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    limiter = Limiter(
        get_remote_address,
        storage_uri=dead,
        storage_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        swallow_errors=swallow,
    )
    app = _app(tmp_path, limiter)
    key = _key(app)
    answer = _verify(app, key)
    assert answer.status_code == status, answer.get_data()
    if status == 503:
        error_body(answer, 503, "unavailable")
        assert int(answer.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{" * 70000, "application/json", 413),
        (b"not json", "application/json", 400),
        (b"{}", "text/plain", 415),
    ],
)
def test_bad_bodies_keep_their_answer_through_the_host_limiter(
    tmp_path: Path, body: bytes, content_type: str, status: int
) -> None:
    app = _app(tmp_path, Limiter(get_remote_address, storage_uri="memory://"))
    answer = app.test_client().post(
        "/v1/licenses/verify", data=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == status, answer.get_data()[:200]
