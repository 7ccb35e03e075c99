"""Rules, path normalisation, client IP and the gate's configuration checks."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from licensechain_middleware import ConfigError, GateConfig, Rule
from licensechain_middleware.clientip import ClientAddress
from licensechain_middleware.paths import BadPath, check_raw_path, normalise_path, raw_path_of
from licensechain_middleware.rules import RuleTable
from middleware_support import AUDIENCE, ISSUER, Issuer

from flask_licensechain.core.verifier import LicenseClaims


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def table(*rules: Rule, default: str = "license", case_sensitive: bool = True) -> RuleTable:
    return RuleTable(
        rules, default_policy=default, default_rate_limit=None, case_sensitive=case_sensitive
    )


def matched(t: RuleTable, path: str, method: str = "GET") -> str:
    return t.match(method, path).name


# -- patterns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/premium/report", "/premium/report", True),
        ("/premium/report", "/premium/report/", True),
        ("/premium/report", "/premium/report/x", False),
        ("/premium/report", "/premium/reportx", False),
        ("/premium/**", "/premium", True),
        ("/premium/**", "/premium/", True),
        ("/premium/**", "/premium/a/b/c", True),
        ("/premium/**", "/premiumX", False),
        ("/premium/**", "/premiumX/a", False),
        ("/premium/**", "/other/premium/a", False),
        ("/users/*/export", "/users/42/export", True),
        ("/users/*/export", "/users//export", False),
        ("/users/*/export", "/users/42/43/export", False),
        ("/**", "/", True),
        ("/**", "/anything/at/all", True),
        ("/", "/", True),
        ("/", "/x", False),
        ("/a.b/**", "/aXb/c", False),  # dots are literal, not regex wildcards
    ],
)
def test_pattern_syntax(pattern: str, path: str, expected: bool) -> None:
    t = table(Rule(pattern, public=True))
    assert (matched(t, path) == pattern) is expected


def test_first_match_wins_in_configuration_order() -> None:
    t = table(
        Rule("/api/admin/**", features=("admin",)),
        Rule("/api/**", public=True),
        Rule("/api/admin/open", public=True),  # shadowed by the first rule
    )
    assert matched(t, "/api/admin/open") == "/api/admin/**"
    assert matched(t, "/api/items") == "/api/**"
    assert matched(t, "/elsewhere") == "(default)"


def test_methods_restrict_a_rule_and_fall_through() -> None:
    t = table(Rule("/items/**", methods=("POST", "DELETE"), features=("write",)),
              Rule("/items/**", public=True))  # fmt: skip
    assert matched(t, "/items/1", "POST") == "/items/**"
    assert t.match("POST", "/items/1").requirement.features == {"write"}
    assert t.match("GET", "/items/1").public is True
    assert t.match("PATCH", "/items/1").public is True
    assert t.match("delete".upper(), "/items/1").requirement.features == {"write"}


def test_get_rule_also_guards_head() -> None:
    t = table(Rule("/report", methods=("GET",), features=("export",)), default="public")
    assert t.match("HEAD", "/report").requirement.features == {"export"}
    assert t.match("POST", "/report").public is True


def test_rules_are_case_sensitive_by_default() -> None:
    t = table(Rule("/premium/**", features=("export",)), default="public")
    assert t.match("GET", "/PREMIUM/x").public is True  # not the premium rule
    t = table(Rule("/premium/**", features=("export",)), default="public", case_sensitive=False)
    assert t.match("GET", "/PREMIUM/x").requirement.features == {"export"}
    assert t.match("GET", "/Premium/x").requirement.features == {"export"}


@pytest.mark.parametrize("default", ["license", "public", "deny"])
def test_default_policy(default: str) -> None:
    d = table(Rule("/x", public=True), default=default).match("GET", "/unmatched")
    assert (d.public, d.deny) == (default == "public", default == "deny")


def _license(features: set[str], plan: str | None) -> LicenseClaims:
    return LicenseClaims("s", "j", 0, (), plan, frozenset(features), "k", {})


def test_features_all_any_and_plans() -> None:
    all_ = table(Rule("/a", features=("x", "y"))).match("GET", "/a").requirement
    assert all_.is_met_by(_license({"x", "y", "z"}, None))
    assert not all_.is_met_by(_license({"x"}, None))
    any_ = table(Rule("/a", features=("x", "y"), features_mode="any")).match("GET", "/a")
    assert any_.requirement.is_met_by(_license({"y"}, None))
    assert not any_.requirement.is_met_by(_license({"z"}, None))
    plan = table(Rule("/a", plans=("gold", "platinum"))).match("GET", "/a").requirement
    assert plan.is_met_by(_license(set(), "gold"))
    assert not plan.is_met_by(_license(set(), "pro"))
    assert not plan.is_met_by(_license(set(), None))


def test_rate_limit_of_rule_default_and_exemption() -> None:
    t = RuleTable(
        (Rule("/own", rate_limit="1/second"), Rule("/free", rate_limit="none"), Rule("/d")),
        default_policy="license",
        default_rate_limit="5/minute",
        case_sensitive=True,
    )
    assert t.match("GET", "/own").rate_limit == "1/second"
    assert t.match("GET", "/free").rate_limit is None
    assert t.match("GET", "/d").rate_limit == "5/minute"
    assert t.match("GET", "/unmatched").rate_limit == "5/minute"


# -- path normalisation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("", "/"),
        ("/", "/"),
        ("/premium/x", "/premium/x"),
        ("/public/../premium", "/premium"),
        ("/public/./x", "/public/x"),
        ("//premium", "/premium"),
        ("/a//b///c", "/a/b/c"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/", "/a/"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/...", "/a/..."),
        ("/café", "/café"),
    ],
)
def test_normalise_path(path: str, normal: str) -> None:
    assert normalise_path(path) == normal


@pytest.mark.parametrize(
    "path",
    [
        "/public;x/../premium",
        "/public/..;/premium",
        "/premium;jsessionid=1",
        "/public#/../premium",
        "/public?/../premium",
        "/%70remium",  # a % left after the one decoding: double encoding
        "/public\\..\\premium",
        "/a\x00b",
        "/a\nb",
        "/a\x7fb",
        "premium",
        "*",
    ],
)
def test_refused_paths(path: str) -> None:
    with pytest.raises(BadPath) as caught:
        normalise_path(path)
    assert caught.value.status_code == 400


@pytest.mark.parametrize("raw", ["/premium%2F..", "/premium%2f..", "/a%5Cb", "/a%5cb"])
def test_encoded_separators_in_raw_path_are_refused(raw: str) -> None:
    with pytest.raises(BadPath):
        check_raw_path(raw)


def test_raw_path_of_request_targets() -> None:
    assert raw_path_of("/a%2Fb?x=%2F") == "/a%2Fb"
    assert raw_path_of("http://host:80/a/b?q") == "/a/b"
    assert raw_path_of("https://host") == "/"
    check_raw_path(raw_path_of("/a?next=%2Fpremium"))  # the query never counts


# -- client IP -------------------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert ClientAddress(()).resolve("203.0.113.9", "198.51.100.1") == "203.0.113.9"


def test_forwarded_for_from_a_trusted_proxy() -> None:
    c = ClientAddress(("10.0.0.0/8", "::1/128"))
    assert c.resolve("10.1.2.3", "198.51.100.7") == "198.51.100.7"
    # a client-supplied left entry is not believed: the rightmost untrusted hop is
    assert c.resolve("10.1.2.3", "1.1.1.1, 198.51.100.7, 10.9.9.9") == "198.51.100.7"
    assert c.resolve("203.0.113.9", "198.51.100.7") == "203.0.113.9"  # untrusted peer
    assert c.resolve("10.1.2.3", "not-an-ip") == "10.1.2.3"
    assert c.resolve("10.1.2.3", "10.2.2.2, 10.3.3.3") == "10.2.2.2"
    # over-long: read from its tail, where the trusted proxies wrote
    assert c.resolve("10.1.2.3", "6.6.6.6," * 1000 + "9.9.9.9, 10.9.9.9") == "9.9.9.9"
    assert c.resolve("10.1.2.3", "6" * 5000) == "10.1.2.3"  # no whole hop in the tail
    assert c.resolve(None, None) == "unknown"


# -- configuration ----------------------------------------------------------------------


def base(issuer: Issuer, **values: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks": issuer.jwks}
    data.update(values)
    return data


def test_config_from_toml(issuer: Issuer, tmp_path: Any) -> None:
    jwks = tmp_path / "jwks.json"
    import json

    jwks.write_text(json.dumps(issuer.jwks))
    document = tomllib.loads(
        f"""
        issuer = "{ISSUER}"
        audience = ["{AUDIENCE}", "other_app"]
        jwks_file = "{jwks}"
        leeway = 10
        token_sources = ["bearer", "cookie"]
        token_cookie = "lc"
        default_policy = "deny"
        ratelimit_default = "100/minute"
        trusted_proxies = ["10.0.0.0/8"]

        [[rules]]
        path = "/health"
        public = true
        rate_limit = "none"

        [[rules]]
        path = "/reports/**"
        methods = ["GET", "POST"]
        features = ["export", "pdf"]
        features_mode = "any"
        plan = "business"
        rate_limit = "10/second;100/minute"
        """
    )
    config = GateConfig.from_mapping(document)
    assert config.audience == (AUDIENCE, "other_app")
    assert config.token_sources == ("bearer", "cookie")
    assert config.rules[0] == Rule("/health", public=True, rate_limit="none")
    assert config.rules[1].plans == ("business",)
    assert config.rules[1].methods == ("GET", "POST")
    assert config.rules[1].features_mode == "any"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audience": None}, "audience is required"),
        ({"audience": None, "verify_audience": True}, "verify_audience to false"),
        ({"verify_audience": False}, "choose one"),
        ({"issuer": ""}, "issuer is required"),
        ({"jwks_url": "https://x/jwks"}, "exactly one key source"),
        ({"jwks": None}, "exactly one key source"),
        ({"jwks_url": "ftp://x"}, None),
        ({"leeway": 301}, "leeway"),
        ({"leeway": "30"}, "leeway must be of type"),
        ({"token_sources": ["query"]}, "token_sources"),
        ({"token_sources": []}, "at least one"),
        ({"token_sources": ["bearer", "bearer"]}, "twice"),
        ({"token_cookie": "a b"}, "cookie name"),
        ({"default_policy": "allow"}, "default_policy"),
        ({"ratelimit_storage_url": "mongodb://x"}, "scheme"),
        ({"ratelimit_default": "lots"}, "not a limit"),
        ({"ratelimit_strategy": "token-bucket"}, "ratelimit_strategy"),
        ({"denylist_url": "sqlite:///x"}, "scheme"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "not an IP network"),
        ({"trusted_proxies": "10.0.0.0/8"}, "list of strings"),
        ({"strip_token": "yes"}, "strip_token must be of type"),
        ({"surprise": 1}, "unknown key(s): surprise"),
        ({"rules": {"path": "/x"}}, "list of tables"),
        ({"rules": [{"path": "/x", "colour": "red"}]}, "unknown key(s): colour"),
        ({"rules": [{"public": True}]}, "needs a 'path'"),
        ({"rules": [{"path": "/x", "plan": "a", "plans": ["b"]}]}, "not both"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(
    issuer: Issuer, change: dict[str, Any], message: str | None
) -> None:
    data = base(issuer)
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None or k == "audience"}
    if data.get("audience") is None:
        data.pop("audience", None)
    with pytest.raises(ConfigError) as caught:
        GateConfig.from_mapping(data)
    if message:
        assert message in str(caught.value)


def test_audience_check_can_be_disabled_explicitly(issuer: Issuer) -> None:
    config = GateConfig.from_mapping(base(issuer, audience=None, verify_audience=False))
    assert config.audience is None and config.verify_audience is False


@pytest.mark.parametrize(
    "pattern",
    ["premium", "/a/**/b", "/a/", "/a//b", "/a/../b", "/a;b", "/a%2fb", "/a/b*", "/a?", ""],
)
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigError):
        Rule(pattern)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"public": True, "features": ("x",)},
        {"public": True, "plans": ("gold",)},
        {"methods": ("GE T",)},
        {"methods": ()},
        {"features_mode": "some"},
        {"rate_limit": "fast"},
        {"features": "export"},  # a string, not a list: refused rather than split
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Rule("/x", **kwargs)


def test_rule_methods_are_upper_cased() -> None:
    assert Rule("/x", methods=("get", "Post")).methods == ("GET", "POST")


def test_config_repr_does_not_dump_keys(issuer: Issuer) -> None:
    text = repr(GateConfig.from_mapping(base(issuer)))
    assert issuer.key.jwk()["n"] not in text
