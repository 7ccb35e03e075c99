"""Precompiled rules: one regular expression per method, first match wins.

Every rule becomes one capturing group of an alternation; Python tries the
alternatives left to right, so ``match.lastindex`` names the first rule (in
configuration order) whose pattern fits. Rules restricted to some methods only
take part in those methods' expressions. ``GET`` implies ``HEAD``: servers
answer ``HEAD`` by running the ``GET`` handler, so a ``GET`` rule must guard it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from flask_licensechain.core.gate import Requirement

from .config import NO_LIMIT, Rule


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with what the hot path needs precomputed."""

    rule: Rule | None  # None: the default policy for unmatched paths
    public: bool
    deny: bool
    requirement: Requirement
    #: ``limits`` string for this rule (its own, or the default), None when unlimited
    rate_limit: str | None

    @property
    def name(self) -> str:
        return self.rule.path if self.rule is not None else "(default)"


def pattern_regex(pattern: str) -> str:
    """The regular expression (to be full-matched) of one documented path pattern."""
    if pattern == "/":
        return "/"
    parts: list[str] = []
    segments = pattern[1:].split("/")
    for seg in segments:
        if seg == "**":
            # the prefix itself, or anything below it (segment-aligned)
            return "".join(parts) + "(?:/.*)?" if parts else "/.*"
        parts.append("/[^/]+" if seg == "*" else "/" + re.escape(seg))
    return "".join(parts) + "/?"


class RuleTable:
    """Finds the compiled rule for a method and a normalised path."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        default_policy: str,
        default_rate_limit: str | None,
        case_sensitive: bool,
    ) -> None:
        def limit_of(own: str | None) -> str | None:
            value = own if own is not None else default_rate_limit
            return None if value in (None, NO_LIMIT) else value

        self.compiled = tuple(
            CompiledRule(
                rule=r,
                public=r.public,
                deny=False,
                requirement=Requirement(
                    frozenset(r.features), r.features_mode == "any", frozenset(r.plans)
                ),
                rate_limit=limit_of(r.rate_limit),
            )
            for r in rules
        )
        self.default = CompiledRule(
            rule=None,
            public=default_policy == "public",
            deny=default_policy == "deny",
            requirement=Requirement(),
            rate_limit=limit_of(None),
        )
        flags = 0 if case_sensitive else re.IGNORECASE
        named: set[str] = set()
        for r in rules:
            if r.methods is not None:
                named.update(r.methods)
                if "GET" in r.methods:
                    named.add("HEAD")
        self._by_method = {m: self._build(m, flags) for m in named}
        self._other = self._build(None, flags)

    def _build(
        self, method: str | None, flags: int
    ) -> tuple[re.Pattern[str] | None, tuple[CompiledRule, ...]]:
        chosen = tuple(c for c in self.compiled if _applies(c.rule, method))
        if not chosen:
            return None, ()
        alternation = "|".join(
            f"({pattern_regex(c.rule.path)})" for c in chosen if c.rule is not None
        )
        return re.compile(alternation, flags), chosen

    def match(self, method: str, path: str) -> CompiledRule:
        regex, chosen = self._by_method.get(method) or self._other
        if regex is not None:
            m = regex.fullmatch(path)
            if m is not None and m.lastindex is not None:
                return chosen[m.lastindex - 1]
        return self.default


def _applies(rule: Rule | None, method: str | None) -> bool:
    if rule is None or rule.methods is None:
        return True
    if method is None:
        return False
    return method in rule.methods or (method == "HEAD" and "GET" in rule.methods)
