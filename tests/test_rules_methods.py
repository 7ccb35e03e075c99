"""Rules restricted to HTTP methods (RFC 9110 section 9): which rule a method meets, HEAD as GET."""

from __future__ import annotations

import pytest
from licensechain_middleware import Rule
from licensechain_middleware.rules import RuleTable, pattern_regex

from flask_licensechain.core.verifier import LicenseClaims


def claims(features: frozenset[str], plan: str | None) -> LicenseClaims:
    return LicenseClaims("lic_1", "jti_1", 0, (), plan, features, "kid", {})


def table(*rules: Rule, default: str = "license") -> RuleTable:
    return RuleTable(rules, default_policy=default, default_rate_limit=None, case_sensitive=True)


def items_table() -> RuleTable:
    return table(
        Rule("/items/**", methods=("GET",), public=True),
        Rule("/items/**", methods=("POST",), features=("write",)),
    )


def test_post_does_not_meet_the_get_only_public_rule() -> None:
    t = items_table()
    post = t.match("POST", "/items/1")
    assert post.public is False
    assert post.requirement.features == frozenset({"write"})


def test_head_meets_the_get_rule() -> None:
    # RFC 9110 section 9.3.2: HEAD is GET without the content; servers run the GET handler.
    t = items_table()
    head = t.match("HEAD", "/items/1")
    assert head.public is True and head.rule is not None and head.rule.methods == ("GET",)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_unnamed_method_falls_to_the_default_policy(method: str) -> None:
    t = items_table()
    decision = t.match(method, "/items/1")
    assert decision.rule is None and decision.public is False and decision.deny is False


def test_head_does_not_meet_a_post_rule() -> None:
    t = table(Rule("/items/**", methods=("POST",), features=("write",)), default="public")
    assert t.match("HEAD", "/items/1").public is True
    assert t.match("POST", "/items/1").requirement.features == frozenset({"write"})


def test_rule_without_methods_meets_every_method() -> None:
    t = table(Rule("/items/**", methods=("GET",), public=True), Rule("/items/**", features=("x",)))
    for method in ("POST", "DELETE", "BREW"):
        assert t.match(method, "/items/1").requirement.features == frozenset({"x"})
    assert t.match("GET", "/items/1").public is True
    assert t.match("HEAD", "/items/1").public is True


def test_method_restricted_rules_keep_configuration_order() -> None:
    t = table(
        Rule("/a/**", features=("all-methods",)),
        Rule("/a/b", methods=("GET",), public=True),  # shadowed by the first rule
    )
    assert t.match("GET", "/a/b").requirement.features == frozenset({"all-methods"})


def test_rules_of_a_method_map_each_group_to_its_rule() -> None:
    t = table(
        Rule("/one", methods=("POST",), features=("one",)),
        Rule("/two", methods=("POST",), features=("two",)),
        Rule("/three", features=("three",)),
    )
    assert t.match("POST", "/one").requirement.features == frozenset({"one"})
    assert t.match("POST", "/two").requirement.features == frozenset({"two"})
    assert t.match("POST", "/three").requirement.features == frozenset({"three"})
    assert t.match("GET", "/three").requirement.features == frozenset({"three"})
    assert t.match("GET", "/one").rule is None


def test_no_rules_at_all_answer_the_default() -> None:
    for default in ("license", "public", "deny"):
        decision = table(default=default).match("GET", "/x")
        assert decision.rule is None and decision.name == "(default)"
        assert (decision.public, decision.deny) == (default == "public", default == "deny")


def test_default_policy_has_no_requirements() -> None:
    decision = table(default="license").match("GET", "/x")
    assert (
        decision.requirement.features == frozenset() and decision.requirement.plans == frozenset()
    )
    assert decision.requirement.any_feature is False
    assert decision.requirement.is_met_by(claims(frozenset(), None))


def test_rule_name_is_its_pattern() -> None:
    assert items_table().match("GET", "/items/x").name == "/items/**"


@pytest.mark.parametrize(
    ("pattern", "regex"),
    [("/", "/"), ("/**", "/.*"), ("/a/**", "/a(?:/.*)?"), ("/a/*/b", "/a/[^/]+/b/?")],
)
def test_pattern_regex(pattern: str, regex: str) -> None:
    assert pattern_regex(pattern) == regex


def test_features_any_with_plans_needs_both() -> None:
    t = table(Rule("/a", features=("x", "y"), features_mode="any", plans=("gold",)))
    rule = t.match("GET", "/a")
    assert rule.requirement.any_feature is True
    assert rule.requirement.is_met_by(claims(frozenset({"y"}), "gold"))
    assert not rule.requirement.is_met_by(claims(frozenset({"y"}), "silver"))
    assert not rule.requirement.is_met_by(claims(frozenset({"z"}), "gold"))


def test_features_all_is_not_any() -> None:
    rule = table(Rule("/a", features=("x", "y"))).match("GET", "/a")
    assert rule.requirement.any_feature is False
    assert not rule.requirement.is_met_by(claims(frozenset({"y"}), None))
    assert rule.requirement.is_met_by(claims(frozenset({"x", "y"}), None))


def test_a_matched_rule_never_denies() -> None:
    # Only the "deny" default policy refuses outright; a configured rule grants or requires.
    t = items_table()
    for method in ("GET", "HEAD", "POST"):
        rule = t.match(method, "/items/1")
        assert rule.rule is not None and rule.deny is False
