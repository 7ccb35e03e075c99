"""Every ``LICENSECHAIN_*`` value is checked in ``init_app``, as strictly as ``GateConfig``:
a bad value names its setting, a misspelt key suggests the right one, and what is built
lazily (the JWKS source, the authoritative checker) is checked at start too."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_licensechain import LicenseChain
from flask_licensechain.config import Settings, config_from_environ
from flask_licensechain.core.errors import ConfigError


def start(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update({"TESTING": True, "LICENSECHAIN_RATELIMIT_ENABLED": False, **config})
    LicenseChain(app)
    return app


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("LICENSECHAIN_RATELIMIT_ENABLED", "nope", "must be a boolean"),
        ("LICENSECHAIN_DENYLIST_FAIL_OPEN", "enabled", "must be a boolean"),
        ("LICENSECHAIN_DENYLIST_MIRROR", 2, "must be a boolean"),
        ("LICENSECHAIN_MAX_TOKEN_BYTES", "8k", "must be an integer"),
        ("LICENSECHAIN_MAX_BODY_BYTES", -1, "must be a positive number"),
        ("LICENSECHAIN_LEEWAY", "thirty", "must be a number"),
        ("LICENSECHAIN_LEEWAY", 301, "between 0 and 300"),
        ("LICENSECHAIN_KEY_REFRESH_INTERVAL", -1, "must be >= 0"),
        ("LICENSECHAIN_RATELIMIT_PER_IP", "ten per second", "is not a limit"),
        ("LICENSECHAIN_REDIS_URL", "localhost:6379", "storage URI"),
        ("LICENSECHAIN_DENYLIST_URL", "mongodb://x", "scheme 'mongodb'"),
        ("LICENSECHAIN_DATABASE_URL", "not a url", "is not a database URL"),
        ("LICENSECHAIN_INTROSPECT_URL", "licenses.example.com/introspect", "http(s) URL"),
        ("LICENSECHAIN_URL_PREFIX", "v1", "starting with '/'"),
        ("LICENSECHAIN_TOKEN_SOURCES", "bearer,query", "'query' is not one of"),
        ("LICENSECHAIN_TOKEN_COOKIE", "a b", "is not a cookie name"),
    ],
)
def test_a_bad_value_names_its_setting(tmp_path: Path, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        start(tmp_path, **{key: value})
    assert key in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("YES", True), ("on", True), ("true", True), ("0", False), ("Off", False)],
)
def test_booleans_take_the_usual_spellings(text: str, expected: bool) -> None:
    settings = Settings.from_mapping({"LICENSECHAIN_RATELIMIT_ENABLED": text})
    assert settings.ratelimit_enabled is expected


def test_a_misspelt_key_in_app_config_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean LICENSECHAIN_DATABASE_URL"):
        start(tmp_path, LICENSECHAIN_DATABSE_URL="sqlite://")


def test_an_unknown_key_in_the_environment_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        "LICENSECHAIN_API_KEY": "lc_live_sdk",  # LicenseChain's SDKs read these
        "LICENSECHAIN_BASE_URL": "https://api.licensechain.app",
        "LICENSECHAIN_REDIS_ULR": "redis://127.0.0.1:6379",
        "LICENSECHAIN_GATEWAY_UPSTREAM": "http://127.0.0.1:9000",  # the gateway's own
    }
    with caplog.at_level(logging.WARNING, logger="licensechain.config"):
        config = config_from_environ(environ)
    text = caplog.text
    assert "LICENSECHAIN_REDIS_ULR (did you mean LICENSECHAIN_REDIS_URL?)" in text
    assert "LICENSECHAIN_API_KEY" in text and "LICENSECHAIN_GATEWAY_UPSTREAM" not in text
    assert "lc_live_sdk" not in text  # names only, never values
    assert config == {}


def test_an_unknown_keyword_option_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="did you mean leeway"):
        LicenseChain(Flask(__name__, instance_path=str(tmp_path)), leway=10)


def test_an_unusable_jwks_source_stops_the_app_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LICENSECHAIN_JWKS_URL"):
        start(
            tmp_path,
            LICENSECHAIN_JWKS_URL="http://licenses.example.com/jwks",  # plain http, not loopback
            LICENSECHAIN_AUDIENCE="app_1",
        )
    with pytest.raises(ConfigError, match="LICENSECHAIN_JWKS_FILE"):
        start(
            tmp_path,
            LICENSECHAIN_JWKS_FILE=str(tmp_path / "missing.json"),
            LICENSECHAIN_AUDIENCE="a",
        )


def test_authoritative_mode_without_a_status_source_stops_the_app(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    with pytest.raises(ConfigError, match="LICENSECHAIN_INTROSPECT_URL"):
        start(
            tmp_path,
            LICENSECHAIN_JWKS_FILE=str(jwks),
            LICENSECHAIN_AUDIENCE="app_1",
            LICENSECHAIN_AUTHORITATIVE="yes",
        )


def test_a_missing_driver_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def missing(name: str, *args: Any) -> Any:
        return None if name in ("psycopg", "redis") else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    with pytest.raises(ConfigError, match=r"pip install 'flask-licensechain\[postgres\]'"):
        Settings.from_mapping({"LICENSECHAIN_DATABASE_URL": "postgresql://db.example/lc"})
    with pytest.raises(ConfigError, match=r"pip install 'flask-licensechain\[redis\]'"):
        Settings.from_mapping({"LICENSECHAIN_REDIS_URL": "redis://127.0.0.1:6379"})


def test_an_integrator_without_an_issuer_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    with caplog.at_level(logging.WARNING, logger="licensechain.extension"):
        start(tmp_path, LICENSECHAIN_JWKS_FILE=str(jwks), LICENSECHAIN_AUDIENCE="app_1")
    assert "LICENSECHAIN_ISSUER is not set" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="licensechain.extension"):
        start(
            tmp_path,
            LICENSECHAIN_JWKS_FILE=str(jwks),
            LICENSECHAIN_AUDIENCE="app_1",
            LICENSECHAIN_ISSUER="https://licenses.example.test/v1",
        )
    assert "LICENSECHAIN_ISSUER" not in caplog.text


def test_an_issuer_refusal_is_a_config_error(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="LICENSECHAIN_ISSUER"):
        LicenseChain(app)  # neither debug nor testing, and no issuer URL
