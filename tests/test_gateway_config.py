"""The gateway's configuration: TOML plus environment, validated at start with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support.tokens import TestIssuer
from licensechain_middleware.gateway.cli import main
from licensechain_middleware.gateway.config import load_config
from licensechain_middleware.gateway.headers import response_headers
from licensechain_middleware.gateway.settings import GatewayConfigError


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return TestIssuer(tmp_path_factory.mktemp("issuer")).jwks_file


def toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def good(tmp_path: Path, jwks_file: Path) -> Path:
    return toml(
        tmp_path / "gw.toml",
        f"""
issuer = "https://licenses.test"
audience = "app_1"
jwks_file = "{jwks_file}"

[[rules]]
path = "/public/**"
public = true

[gateway]
upstream = "http://127.0.0.1:9000"
workers = 3
""",
    )


def test_a_good_file_loads(good: Path) -> None:
    config = load_config(good, env={})
    assert config.gateway.upstream == "http://127.0.0.1:9000"
    assert config.gateway.workers == 3
    assert config.gate.audience == "app_1"
    assert config.gate.rules[0].public is True


def test_environment_overrides_the_file(good: Path) -> None:
    env = {
        "LICENSECHAIN_GATEWAY_UPSTREAM": "http://127.0.0.1:9100/base",
        "LICENSECHAIN_GATEWAY_WORKERS": "5",
        "LICENSECHAIN_GATEWAY_ACCESS_LOG": "false",
        "LICENSECHAIN_AUDIENCE": "app_2,app_3",
        "LICENSECHAIN_LEEWAY": "10",
        "LICENSECHAIN_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    config = load_config(good, env=env)
    assert config.gateway.upstream == "http://127.0.0.1:9100/base"
    assert config.gateway.workers == 5
    assert config.gateway.access_log is False
    assert config.gate.audience == ("app_2", "app_3")
    assert config.gate.leeway == 10
    assert config.gate.denylist_url == "redis://127.0.0.1:6379/0"
    assert config.gate.ratelimit_storage_url == "redis://127.0.0.1:6379/0"


def test_the_config_path_can_come_from_the_environment(good: Path) -> None:
    config = load_config(env={"LICENSECHAIN_GATEWAY_CONFIG": str(good)})
    assert config.source == str(good)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("workers = 3", "workerz = 3"), "unknown key(s): workerz"),
        (
            ('issuer = "https://licenses.test"', 'issuer = "https://licenses.test"\ncolour = 1'),
            "unknown key(s): colour",
        ),
        (('path = "/public/**"', 'path = "/public/**/x"'), "'**' must be the last segment"),
        (('path = "/public/**"', 'path = "public"'), "must start with '/'"),
        (('upstream = "http://127.0.0.1:9000"', ""), "upstream is required"),
        (('upstream = "http://127.0.0.1:9000"', 'upstream = "ftp://x"'), "http:// or https://"),
        (('audience = "app_1"', ""), "audience is required"),
        (("workers = 3", 'workers = "three"'), "workers must be a int"),
        (("workers = 3", "workers = 0"), "workers must be at least 1"),
        (("[gateway]", "[gateway]\nbind = 'nowhere'"), "bind must be HOST:PORT"),
        (("[gateway]", "[gateway]\nserver = 'apache'"), "server must be one of"),
    ],
)
def test_bad_files_fail_with_a_clear_message(
    good: Path, change: tuple[str, str], message: str
) -> None:
    text = good.read_text().replace(*change)
    toml(good, text)
    with pytest.raises(GatewayConfigError) as error:
        load_config(good, env={})
    assert message in str(error.value)
    assert str(good) in str(error.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match="not valid TOML"):
        load_config(toml(tmp_path / "bad.toml", "issuer = "), env={})
    with pytest.raises(GatewayConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", env={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LICENSECHAIN_GATEWAY_UPSTREEM": "http://x"}, "LICENSECHAIN_GATEWAY_UPSTREEM"),
        ({"LICENSECHAIN_GATEWAY_WORKERS": "many"}, "GATEWAY_WORKERS must be an integer"),
        ({"LICENSECHAIN_GATEWAY_METRICS": "perhaps"}, "must be a bool"),
        ({"LICENSECHAIN_LEEWAY": "soon"}, "LICENSECHAIN_LEEWAY must be a number"),
    ],
)
def test_bad_environment_fails_with_a_clear_message(
    good: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(GatewayConfigError, match=message):
        load_config(good, env=env)


def test_check_exits_zero_for_a_good_file(
    good: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LICENSECHAIN_GATEWAY_CONFIG", raising=False)
    assert main(["--config", str(good), "--check"]) == 0
    assert "is valid" in capsys.readouterr().err


def test_check_exits_two_with_the_reason(
    good: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LICENSECHAIN_GATEWAY_CONFIG", raising=False)
    toml(good, good.read_text().replace("/public/**", "/pub;lic"))
    assert main(["--config", str(good), "--check"]) == 2
    assert "configuration error" in capsys.readouterr().err
    missing_keys = toml(
        tmp_path / "nokeys.toml",
        good.read_text().replace("/pub;lic", "/public/**").replace("jwks.json", "absent.json"),
    )
    assert main(["--config", str(missing_keys), "--check"]) == 2
    assert "absent.json" in capsys.readouterr().err


def test_upstream_hop_by_hop_headers_do_not_reach_the_client() -> None:
    kept = response_headers(
        [
            ("Connection", "close, X-Internal"),
            ("X-Internal", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]
    )
    assert kept == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_upstream_urls_keep_the_base_path_and_the_raw_query() -> None:
    from licensechain_middleware.gateway.urls import UpstreamBase, encode_path

    base = UpstreamBase("https://svc.internal:8443/api/")
    url = base.http_url("/a%20b", "x=1&y=%2F")
    assert str(url) == "https://svc.internal:8443/api/a%20b?x=1&y=%2F"
    assert base.http_url("/a%20b", "x=1&y=%2F") is url  # parsed once
    assert str(base.http_url("/a%20b", "")) == "https://svc.internal:8443/api/a%20b"
    assert base.websocket_url("/ws", "") == "wss://svc.internal:8443/api/ws"
    assert encode_path("/caf\u00e9/a b/%".encode()) == "/caf%C3%A9/a%20b/%25"
    for bad in ("ftp://x", "http://", "http://x/?q=1", "http://x/#f"):
        with pytest.raises(ValueError):
            UpstreamBase(bad)
