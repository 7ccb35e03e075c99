"""Headers the gate removes or reads: RFC 9110 hop-by-hop, RFC 6265 cookies, RFC 6750 Bearer."""

from __future__ import annotations

import pytest
from licensechain_middleware.headers import (
    FRAMING,
    HOP_BY_HOP,
    METHOD_OVERRIDE,
    REMOVED,
    REMOVED_ENVIRON,
    connection_options,
)
from middleware_support import Issuer, gate_config
from test_middleware_hostile import Harness, bearer

from flask_licensechain.core.gate import bearer_token, cookie_value, without_cookie

#: RFC 9110 section 7.6.1 plus RFC 2616's Trailer, Proxy-Authenticate, Proxy-Authorization.
HOP_BY_HOP_NAMES = {
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authenticate",
    "proxy-authorization",
}


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(params=["wsgi", "asgi"])
def harness(request: pytest.FixtureRequest, issuer: Issuer) -> Harness:
    return Harness(str(request.param), gate_config(issuer, token_sources=("bearer", "cookie")))


# -- the lists ---------------------------------------------------------------------------------


def test_hop_by_hop_list_is_rfc_9110s() -> None:
    assert HOP_BY_HOP == HOP_BY_HOP_NAMES
    assert FRAMING == {"host", "content-length", "content-type"}
    assert METHOD_OVERRIDE == {"x-http-method-override", "x-http-method", "x-method-override"}
    assert REMOVED == HOP_BY_HOP_NAMES | METHOD_OVERRIDE
    assert "HTTP_KEEP_ALIVE" in REMOVED_ENVIRON and "HTTP_X_HTTP_METHOD_OVERRIDE" in REMOVED_ENVIRON
    assert len(REMOVED_ENVIRON) == len(REMOVED)


# -- hop-by-hop removal by name, whatever Connection says ---------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Trailer", "Expires"),
        ("Proxy-Authenticate", 'Basic realm="x"'),
        ("Proxy-Authorization", "Basic eA=="),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
    ],
)
def test_hop_by_hop_header_is_removed_without_connection_naming_it(
    harness: Harness, name: str, value: str
) -> None:
    outcome = harness.send("/public/x", [(name, value), ("X-Kept", "yes")])
    assert outcome.status == 200 and outcome.downstream is not None
    assert name.lower() not in outcome.downstream
    assert outcome.downstream["x-kept"] == ["yes"]


def test_connection_option_removes_the_named_header(harness: Harness) -> None:
    outcome = harness.send(
        "/public/x",
        [("Connection", "X-Hop-A , x-hop-b"), ("X-Hop-A", "1"), ("X-Hop-B", "2"), ("X-C", "3")],
    )
    assert outcome.downstream is not None
    assert "x-hop-a" not in outcome.downstream and "x-hop-b" not in outcome.downstream
    assert outcome.downstream["x-c"] == ["3"]


# -- the helpers ---------------------------------------------------------------------------------


def test_connection_options_are_lower_case_tokens_without_framing_fields() -> None:
    value = "Keep-Alive, X-Foo ,,  , HOST, Content-Length, content-type, bad name, x;y, X-Bar"
    assert list(connection_options(value)) == ["keep-alive", "x-foo", "x-bar"]
    assert list(connection_options("")) == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('lc="tok"', "tok"),  # RFC 6265 section 4.1.1: a cookie-value may be DQUOTEd
        ("lc=tok", "tok"),
        ("a=1; lc=tok; b=2", "tok"),
        ("a=1;lc=tok", "tok"),
        (" lc = tok ", "tok"),
        ("lc=first; lc=second", "first"),
        ("lc=a=b", "a=b"),
        ('lc="', '"'),  # one quote is not a quoted value
        ('lc=""', ""),
        ("lc=", ""),
        ("xlc=1; lcx=2", None),
        ("lc", None),
        ("", None),
    ],
)
def test_cookie_value(header: str, expected: str | None) -> None:
    assert cookie_value(header, "lc") == expected


def test_without_cookie_removes_every_cookie_of_that_name() -> None:
    assert without_cookie("a=1; lc=x; b=2; lc=y", "lc") == "a=1; b=2"
    assert without_cookie(" lc = x ;a=1;;", "lc") == "a=1"
    assert without_cookie("lc=x", "lc") == ""
    assert without_cookie("xlc=1; lcx=2", "lc") == "xlc=1; lcx=2"
    assert without_cookie("lc=a=b; c=d=e", "lc") == "c=d=e"


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),  # RFC 9110 section 11.1: the scheme is case-insensitive
        ("BEARER abc", "abc"),
        ("Bearer   abc", "abc"),
        ("Bearer abc ", "abc "),
        ("Bearer \tabc", "\tabc"),  # only spaces separate scheme and token
        ("Bearer Xabc", "Xabc"),
        ("Bearer", ""),
        ("Bearer ", ""),
        ("Basic abc", None),
        ("Bearerabc", None),
        ("", None),
    ],
)
def test_bearer_token(authorization: str, expected: str | None) -> None:
    assert bearer_token(authorization) == expected


# -- the cookie through both gates ---------------------------------------------------------------


def test_quoted_cookie_token_is_unquoted_by_the_gate(harness: Harness, issuer: Issuer) -> None:
    token = issuer.token(features=("export",), sub="lic_cookie")
    outcome = harness.send("/premium/x", [("Cookie", f'a=1; license_token="{token}"; b=2')])
    assert outcome.status == 200 and outcome.downstream is not None
    assert outcome.downstream["x-license-subject"] == ["lic_cookie"]
    # the token cookie itself is not passed on
    assert "license_token" not in "".join(outcome.downstream.get("cookie", []))


def test_bearer_scheme_in_lower_case_passes_the_gate(harness: Harness, issuer: Issuer) -> None:
    token = issuer.token(features=("export",))
    outcome = harness.send("/premium/x", [("Authorization", f"bearer {token}")])
    assert outcome.status == 200
    assert harness.send("/premium/x", [bearer(token)]).status == 200
