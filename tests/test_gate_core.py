"""Direct unit tests of the one gate (``flask_licensechain.core.gate``).

The adapters' tests reach these rules through a request; here each rule is asserted on its
own inputs: the cookie CSRF same-origin check (OWASP CSRF cheat sheet; origins per RFC 6454
with default ports per scheme), the CORS preflight (Fetch standard 3.2.2), the internal
reason codes of the gate's errors, the reason classes (RFC 6750 ``error_description``) and
their fallbacks, the request id rule and the rendering of a refusal.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest

from flask_licensechain.core.errors import (
    ConfigError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    Unauthorized,
)
from flask_licensechain.core.gate import (
    FEATURE_MISSING_MESSAGE,
    REQUEST_ID_ENVIRON,
    CrossSiteRequest,
    FeatureMissing,
    MissingToken,
    Requirement,
    TokenReader,
    _origin_host,
    _plain_host,
    bearer_token,
    check_cookie_name,
    check_same_origin,
    check_token_sources,
    cookie_value,
    environ_request_id,
    is_cors_preflight,
    reason_class,
    render_error,
    render_refusal,
    request_id,
    without_cookie,
)
from flask_licensechain.core.verifier import Check, TokenRejected

HOST = "app.example"


def _post(**kw: Any) -> None:
    args: dict[str, Any] = {
        "host": HOST,
        "origin": None,
        "sec_fetch_site": None,
        "csrf_header": None,
        "cookies": None,
    }
    args.update(kw)
    method = args.pop("method", "POST")
    check_same_origin(method, **args)


# -- cookie CSRF -----------------------------------------------------------------------


def test_cross_site_request_is_403_insufficient_scope_with_its_own_reason() -> None:
    with pytest.raises(CrossSiteRequest) as caught:
        _post(origin="https://evil.example")
    error = caught.value
    assert (error.status_code, error.code, error.reason) == (
        403,
        "insufficient_scope",
        "cross_site_request",
    )
    assert "POST" in str(error.detail)


def test_safe_method_with_the_cookie_only_passes() -> None:
    for method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        _post(method=method, origin="https://evil.example")


def test_websocket_handshake_is_not_safe_whatever_the_case_of_upgrade() -> None:
    for upgrade in ("websocket", "WebSocket", "h2c, WEBSOCKET"):
        with pytest.raises(CrossSiteRequest):
            _post(method="GET", origin="https://evil.example", upgrade=upgrade)
    _post(method="GET", origin="https://evil.example", upgrade="h2c")


def test_sec_fetch_site_same_origin_passes_trimmed_and_in_any_case() -> None:
    _post(sec_fetch_site=" Same-Origin ")
    for other in ("same-site", "cross-site", "none"):
        with pytest.raises(CrossSiteRequest):
            _post(sec_fetch_site=other)


def test_same_origin_origin_passes_only_without_a_contrary_sec_fetch_site() -> None:
    _post(origin="https://app.example")
    _post(origin="HTTPS://App.Example:443", host="APP.example")
    with pytest.raises(CrossSiteRequest):
        _post(origin="https://app.example", sec_fetch_site="cross-site")


def test_origin_without_host_is_not_same_origin() -> None:
    for host in (None, ""):
        with pytest.raises(CrossSiteRequest):
            _post(origin="https://app.example", host=host)


def test_origin_of_another_host_or_port_is_cross_site() -> None:
    for origin in (
        "https://evil.example",
        "https://app.example:8443",
        "http://app.example:443",
        "https://app.example:80",
        "null",
        "https://app.example/",
    ):
        with pytest.raises(CrossSiteRequest):
            _post(origin=origin)


def test_double_submit_csrf_token_equal_to_its_cookie_passes() -> None:
    _post(csrf_header=" s3cret ", cookies="license_token=t; license_csrf=s3cret")


def test_double_submit_needs_both_the_header_and_the_cookie() -> None:
    with pytest.raises(CrossSiteRequest):
        _post(csrf_header="s3cret", cookies=None)
    with pytest.raises(CrossSiteRequest):
        _post(csrf_header="s3cret", cookies="")
    with pytest.raises(CrossSiteRequest):
        _post(csrf_header=None, cookies="license_csrf=s3cret")
    with pytest.raises(CrossSiteRequest):
        _post(csrf_header="", cookies="license_csrf=s3cret")


def test_double_submit_with_another_value_or_an_empty_cookie_is_cross_site() -> None:
    with pytest.raises(CrossSiteRequest):
        _post(csrf_header="other", cookies="license_csrf=s3cret")
    with pytest.raises(CrossSiteRequest):
        _post(csrf_header="s3cret", cookies="license_token=s3cret")
    with pytest.raises(CrossSiteRequest):
        _post(csrf_header="x", cookies="license_csrf=")


# -- origins and hosts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://app.example", "app.example"),
        ("HTTPS://APP.Example", "app.example"),
        (" https://app.example ", "app.example"),
        ("https://app.example:443", "app.example"),
        ("http://app.example:80", "app.example"),
        ("http://app.example:443", "app.example:443"),
        ("https://app.example:80", "app.example:80"),
        ("https://app.example:8443", "app.example:8443"),
        ("https://[::1]", "[::1]"),
        ("https://[::1]:443", "[::1]"),
        ("http://[::1]:8080", "[::1]:8080"),
    ],
)
def test_origin_host_drops_only_its_own_schemes_default_port(origin: str, host: str) -> None:
    assert _origin_host(origin) == host


@pytest.mark.parametrize(
    "origin",
    ["null", "", "app.example", "https://", "ftp://app.example", "https://app.example/x"],
)
def test_origin_that_is_not_http_scheme_host_port_has_no_host(origin: str) -> None:
    assert _origin_host(origin) is None


@pytest.mark.parametrize(
    ("host", "plain"),
    [
        ("app.example", "app.example"),
        (" App.Example ", "app.example"),
        ("app.example:80", "app.example"),
        ("app.example:443", "app.example"),
        ("app.example:8080", "app.example:8080"),
        ("[::1]:443", "[::1]"),
        ("[::1]", "[::1]"),
    ],
)
def test_plain_host_drops_default_ports_80_and_443(host: str, plain: str) -> None:
    assert _plain_host(host) == plain


# -- CORS preflight --------------------------------------------------------------------


def test_cors_preflight_is_options_with_origin_and_request_method() -> None:
    assert is_cors_preflight("OPTIONS", "https://a.example", "POST") is True
    assert is_cors_preflight("OPTIONS", None, "POST") is False
    assert is_cors_preflight("OPTIONS", "https://a.example", None) is False
    assert is_cors_preflight("GET", "https://a.example", "POST") is False


# -- token sources ---------------------------------------------------------------------


def test_token_sources_from_a_comma_separated_string_are_lower_cased() -> None:
    assert check_token_sources(" Bearer , ,COOKIE") == ("bearer", "cookie")
    assert check_token_sources(["x-license-token"]) == ("x-license-token",)


@pytest.mark.parametrize("value", [None, 3, ["bearer", 1], [], "", ["basic"], ["bearer", "BEARER"]])
def test_invalid_token_sources_are_a_config_error_naming_the_key(value: Any) -> None:
    with pytest.raises(ConfigError, match="my_key"):
        check_token_sources(value, "my_key")


def test_config_errors_name_the_default_setting() -> None:
    with pytest.raises(ConfigError, match=r"^token_sources\b"):
        check_token_sources("basic")
    with pytest.raises(ConfigError, match=r"^token_cookie\b"):
        check_cookie_name("a b")


@pytest.mark.parametrize("name", ["a b", "a;b", "", "tok=", 'a"b', None, 7])
def test_a_cookie_name_outside_rfc_6265_token_is_a_config_error(name: Any) -> None:
    with pytest.raises(ConfigError, match="my_cookie"):
        check_cookie_name(name, "my_cookie")
    assert check_cookie_name("__Host-lc.v2", "my_cookie") == "__Host-lc.v2"


def test_token_reader_says_which_sources_it_uses() -> None:
    every = TokenReader(["cookie", "x-license-token", "bearer"])
    assert (every.uses_bearer, every.uses_x_header, every.uses_cookie) == (True, True, True)
    bearer_only = TokenReader(["bearer"])
    assert (bearer_only.uses_bearer, bearer_only.uses_x_header, bearer_only.uses_cookie) == (
        True,
        False,
        False,
    )
    header_only = TokenReader(["x-license-token"])
    assert (header_only.uses_bearer, header_only.uses_x_header, header_only.uses_cookie) == (
        False,
        True,
        False,
    )


def test_x_license_token_is_trimmed_of_spaces_and_tabs_only() -> None:
    reader = TokenReader(["x-license-token"])
    assert reader.read(None, " \tXtokX\t ", None) == ("XtokX", "x-license-token")
    assert reader.read(None, "\ntok\v", None) == ("\ntok\v", "x-license-token")
    assert reader.read(None, " \t", None) == (None, None)


def test_only_a_bearer_reader_takes_a_bearer_authorization_as_its_token() -> None:
    assert TokenReader(["bearer"]).is_token_authorization("Bearer a.b.c") is True
    assert TokenReader(["bearer"]).is_token_authorization("Basic dTpw") is False
    assert TokenReader(["cookie"]).is_token_authorization("Bearer a.b.c") is False


def test_bearer_token_takes_the_credentials_of_the_bearer_scheme_only() -> None:
    assert bearer_token("Bearer   a.b.c") == "a.b.c"
    assert bearer_token("bEARER a.b.c") == "a.b.c"
    assert bearer_token("Bearer") == ""
    assert bearer_token("Basic a.b.c") is None
    assert bearer_token("Bearera.b.c") is None


def test_cookie_value_is_the_first_and_unquoted() -> None:
    assert cookie_value('x=1; lc="tok"; lc=two', "lc") == "tok"
    assert cookie_value("lc", "lc") is None
    assert cookie_value('lc="', "lc") == '"'
    assert cookie_value("alc=1", "lc") is None
    assert without_cookie("a=1; lc=2;; b=3 ; lc =4", "lc") == "a=1; b=3"


# -- the gate's errors and their reason classes -----------------------------------------


def test_missing_token_is_a_bare_401_of_reason_class_missing() -> None:
    error = MissingToken()
    assert (error.status_code, error.reason, error.bearer_error) == (401, "token_missing", None)
    assert reason_class(error) == "missing"


def test_feature_missing_is_403_insufficient_scope_and_no_reason_class() -> None:
    error = FeatureMissing()
    assert (error.status_code, error.code, error.reason) == (
        403,
        "insufficient_scope",
        "insufficient_scope",
    )
    assert error.description == FEATURE_MISSING_MESSAGE
    assert reason_class(error) is None
    assert reason_class(InsufficientScope()) is None
    assert reason_class(InvalidRequest()) is None


@pytest.mark.parametrize(
    ("check", "why"),
    [
        (Check.TOO_LARGE, "malformed"),
        (Check.MALFORMED, "malformed"),
        (Check.ALG_NOT_ALLOWED, "malformed"),
        (Check.UNSUPPORTED_CRIT, "malformed"),
        (Check.BAD_KID, "malformed"),
        (Check.MISSING_CLAIM, "malformed"),
        (Check.BAD_CLAIM, "malformed"),
        (Check.UNKNOWN_KID, "unknown_key"),
        (Check.BAD_SIGNATURE, "bad_signature"),
        (Check.WRONG_TOKEN_USE, "wrong_token_use"),
        (Check.ISSUER_MISMATCH, "wrong_issuer"),
        (Check.AUDIENCE_MISMATCH, "wrong_audience"),
        (Check.EXPIRED, "expired"),
        (Check.NOT_YET_VALID, "not_yet_valid"),
        (Check.REVOKED, "revoked"),
        ("a_check_added_later", "malformed"),
    ],
)
def test_reason_class_of_each_failed_check(check: str, why: str) -> None:
    assert reason_class(TokenRejected(check, "detail")) == why


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        ("token_missing", "missing"),
        ("token_expired", "expired"),
        ("license_expired", "expired"),
        ("license_revoked", "revoked"),
        ("license_suspended", "revoked"),
        ("license_not_found", "revoked"),
    ],
)
def test_reason_class_of_a_live_status_refusal_falls_back_to_revoked(reason: str, why: str) -> None:
    assert reason_class(InvalidToken(reason)) == why
    assert reason_class(Unauthorized(reason=reason)) == why


# -- the request id -------------------------------------------------------------------


def test_request_id_keeps_a_sane_client_id_and_replaces_others() -> None:
    assert request_id("a" * 128) == "a" * 128
    assert request_id("!~") == "!~"
    for bad in (None, "", "a" * 129, "a b", "é", "a\n"):
        fresh = request_id(bad)
        assert re.fullmatch(r"[0-9a-f]{32}", fresh), fresh
    assert request_id(None) != request_id(None)


def test_environ_request_id_is_chosen_once_and_written_back_as_the_header() -> None:
    environ: dict[str, Any] = {"HTTP_X_REQUEST_ID": "client-id-1"}
    assert environ_request_id(environ) == "client-id-1"
    assert environ[REQUEST_ID_ENVIRON] == "client-id-1"
    environ["HTTP_X_REQUEST_ID"] = "changed"
    assert environ_request_id(environ) == "client-id-1"

    environ = {"HTTP_X_REQUEST_ID": "not sane"}
    rid = environ_request_id(environ)
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert environ["HTTP_X_REQUEST_ID"] == rid == environ[REQUEST_ID_ENVIRON]
    assert environ_request_id(environ) == rid

    environ = {"HTTP_X_CORRELATION_ID": "corr-7", "HTTP_X_REQUEST_ID": "other"}
    assert environ_request_id(environ, "HTTP_X_CORRELATION_ID") == "corr-7"
    assert environ["HTTP_X_REQUEST_ID"] == "other"


# -- rendering ------------------------------------------------------------------------


def test_rendered_missing_token_has_a_bare_challenge_and_reason_missing() -> None:
    refusal = render_error(MissingToken(), "rid-1")
    headers = dict(refusal.headers)
    body = json.loads(refusal.body)
    assert refusal.status == 401
    assert body == {
        "error": "unauthorized",
        "message": "A license token is required.",
        "request_id": "rid-1",
        "reason": "missing",
    }
    assert headers["WWW-Authenticate"] == 'Bearer realm="licensechain"'
    assert headers["X-Request-ID"] == "rid-1"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(refusal.body))
    # the compact JSON form, byte for byte
    assert refusal.body == json.dumps(body, separators=(",", ":")).encode()


def test_rendered_rejected_token_names_its_class_in_the_challenge() -> None:
    refusal = render_error(TokenRejected(Check.EXPIRED, "exp"), None, "X-Trace")
    headers = dict(refusal.headers)
    assert headers["WWW-Authenticate"] == (
        'Bearer realm="licensechain", error="invalid_token", error_description="expired"'
    )
    assert "X-Trace" not in headers and "X-Request-ID" not in headers
    assert json.loads(refusal.body)["reason"] == "expired"


def test_rendered_refusal_carries_the_request_id_under_the_configured_header() -> None:
    refusal = render_refusal(MissingToken(), "r-9", "X-Trace")
    headers = dict(refusal.headers)
    assert headers["X-Trace"] == "r-9" and "X-Request-ID" not in headers
    assert dict(render_refusal(MissingToken(), "r-9").headers)["X-Request-ID"] == "r-9"


def test_rendered_feature_missing_has_no_reason() -> None:
    refusal = render_error(FeatureMissing(), "r", "X-Trace")
    assert refusal.status == 403
    assert "reason" not in json.loads(refusal.body)
    assert dict(refusal.headers)["X-Trace"] == "r"


# -- the requirement ------------------------------------------------------------------


def test_requirement_plans_and_features() -> None:
    def claims(plan: str, *features: str) -> Any:
        return SimpleNamespace(plan=plan, features=frozenset(features))

    gold = Requirement(plans=frozenset({"gold"}))
    assert gold.is_met_by(claims("gold")) and not gold.is_met_by(claims("free", "a"))
    both = Requirement(features=frozenset({"a", "b"}))
    assert both.is_met_by(claims("x", "a", "b", "c")) and not both.is_met_by(claims("x", "a"))
    either = Requirement(features=frozenset({"a", "b"}), any_feature=True)
    assert either.is_met_by(claims("x", "b")) and not either.is_met_by(claims("x", "c"))
    assert Requirement().is_met_by(claims("x"))
    with pytest.raises(FeatureMissing):
        both.check(claims("x", "a"))
