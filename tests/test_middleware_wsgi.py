"""``LicenseGate`` (WSGI): verification, rules, identity headers, token handling,
revocation, rate limits (in memory, in Redis, and shared by two real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port
from licensechain_middleware import CLAIMS_KEY, RESULT_KEY, GateResult, LicenseGate, Rule
from middleware_support import (
    AUDIENCE,
    ISSUER,
    EchoWSGI,
    Issuer,
    WSGIResponse,
    call_wsgi,
    gate_config,
    wsgi_environ,
)

from flask_licensechain.core.denylist.redis import RedisDenylist

CHALLENGE = 'Bearer realm="licensechain"'
INVALID_TOKEN = 'Bearer realm="licensechain", error="invalid_token"'
INSUFFICIENT_SCOPE = 'Bearer realm="licensechain", error="insufficient_scope"'


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def echo() -> EchoWSGI:
    return EchoWSGI()


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


def get(gate: Any, target: str, *headers: tuple[str, str], **kw: Any) -> WSGIResponse:
    return call_wsgi(gate, wsgi_environ(kw.pop("method", "GET"), target, headers, **kw))


def unique_prefix() -> str:
    return "lcgt" + uuid.uuid4().hex[:12]


# -- verification and identity ------------------------------------------------------


def test_valid_token_reaches_the_app_with_identity_headers(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer))
    token = issuer.token(sub="lic_42", features=("export", "pdf"), plan="business")
    r = get(gate, "/premium/report?format=csv", bearer(token))
    assert (r.status, r.body) == (200, b"hello")
    env = echo.last
    assert env["HTTP_X_LICENSE_SUBJECT"] == "lic_42"
    assert env["HTTP_X_LICENSE_APP"] == AUDIENCE
    assert env["HTTP_X_LICENSE_PLAN"] == "business"
    assert env["HTTP_X_LICENSE_FEATURES"] == "export,pdf"
    assert env["HTTP_X_LICENSE_TOKEN_ID"] == issuer.claims_of(token)["jti"]
    assert "HTTP_AUTHORIZATION" not in env  # stripped before forwarding
    assert env["QUERY_STRING"] == "format=csv"
    claims = env[CLAIMS_KEY]
    assert claims.sub == "lic_42" and claims.features == {"export", "pdf"}
    decision: GateResult = env[RESULT_KEY]
    assert (decision.allowed, decision.reason, decision.subject) == (True, "licensed", "lic_42")
    assert decision.rule == Rule("/premium/**", features=("export",))


def test_strip_token_false_keeps_the_token(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer, strip_token=False))
    token = issuer.token(features=("export",))
    assert get(gate, "/premium/x", bearer(token)).status == 200
    assert echo.last["HTTP_AUTHORIZATION"] == f"Bearer {token}"


def test_other_authorization_schemes_are_not_ours(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer))
    r = get(gate, "/public/x", ("Authorization", "Basic dXNlcjpwYXNz"))
    assert r.status == 200
    assert echo.last["HTTP_AUTHORIZATION"] == "Basic dXNlcjpwYXNz"  # not stripped
    assert get(gate, "/other", ("Authorization", "Basic dXNlcjpwYXNz")).status == 401


def test_x_license_token_source(issuer: Issuer, echo: EchoWSGI) -> None:
    token = issuer.token(sub="lic_x")
    only_bearer = LicenseGate(echo, gate_config(issuer))
    assert get(only_bearer, "/any", ("X-License-Token", token)).status == 401
    gate = LicenseGate(echo, gate_config(issuer, token_sources=("bearer", "x-license-token")))
    assert get(gate, "/any", ("X-License-Token", token)).status == 200
    assert echo.last["HTTP_X_LICENSE_SUBJECT"] == "lic_x"
    assert "HTTP_X_LICENSE_TOKEN" not in echo.last


def test_cookie_source_is_opt_in_and_the_cookie_is_stripped(issuer: Issuer, echo: EchoWSGI) -> None:
    token = issuer.token(sub="lic_c")
    cookies = ("Cookie", f"theme=dark; lc={token}; session=abc")
    assert get(LicenseGate(echo, gate_config(issuer)), "/any", cookies).status == 401
    gate = LicenseGate(echo, gate_config(issuer, token_sources=("cookie",), token_cookie="lc"))
    assert get(gate, "/any", cookies).status == 200
    assert echo.last["HTTP_X_LICENSE_SUBJECT"] == "lic_c"
    assert echo.last["HTTP_COOKIE"] == "theme=dark; session=abc"
    get(gate, "/any", ("Cookie", f"lc={token}"))
    assert "HTTP_COOKIE" not in echo.last


def test_token_sources_are_tried_in_order(issuer: Issuer, echo: EchoWSGI) -> None:
    first, second = issuer.token(sub="lic_first"), issuer.token(sub="lic_second")
    gate = LicenseGate(echo, gate_config(issuer, token_sources=("x-license-token", "bearer")))
    assert get(gate, "/any", bearer(second), ("X-License-Token", first)).status == 200
    assert echo.last["HTTP_X_LICENSE_SUBJECT"] == "lic_first"
    # every configured carrier is stripped, not only the one that was used
    assert "HTTP_AUTHORIZATION" not in echo.last and "HTTP_X_LICENSE_TOKEN" not in echo.last


def test_identity_follows_the_token_even_with_a_reused_jti(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer))
    first = issuer.token(sub="lic_one", jti="same-jti", plan="pro")
    second = issuer.token(sub="lic_two", jti="same-jti", plan="gold")
    for token, sub, plan in ((first, "lic_one", "pro"), (second, "lic_two", "gold"),
                             (first, "lic_one", "pro")):  # fmt: skip
        assert get(gate, "/x", bearer(token)).status == 200
        assert (echo.last["HTTP_X_LICENSE_SUBJECT"], echo.last["HTTP_X_LICENSE_PLAN"]) == (
            sub,
            plan,
        )


# -- refusals ------------------------------------------------------------------------


def test_missing_token_is_a_bare_challenge(issuer: Issuer, echo: EchoWSGI) -> None:
    r = get(LicenseGate(echo, gate_config(issuer)), "/premium/x", ("X-Request-ID", "req-1"))
    assert r.status == 401
    assert r.headers["www-authenticate"] == CHALLENGE
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "req-1"
    assert r.json() == {
        "error": "unauthorized",
        "message": "A license token is required.",
        "request_id": "req-1",
        "reason": "missing",
    }
    assert echo.seen == []


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda i: "not-a-token", "malformed"),
        (lambda i: "", "malformed"),
        (lambda i: i.token(exp=int(time.time()) - 3600), "expired"),
        (lambda i: i.token(audience="someone_else"), "wrong_audience"),
        (lambda i: i.token(iss=ISSUER + ".evil"), "wrong_issuer"),
        (lambda i: Issuer().token(), "unknown_key"),  # a stranger's key
    ],
    ids=["garbage", "empty", "expired", "audience", "issuer", "stranger"],
)
def test_bad_tokens_get_invalid_token_and_say_why(
    issuer: Issuer, echo: EchoWSGI, make: Any, why: str
) -> None:
    r = get(LicenseGate(echo, gate_config(issuer)), "/x", bearer(make(issuer)))
    assert r.status == 401
    assert r.headers["www-authenticate"] == f'{INVALID_TOKEN}, error_description="{why}"'
    body = r.json()
    assert body["error"] == "unauthorized" and body["request_id"]
    assert body["reason"] == why
    assert set(body) == {"error", "message", "request_id", "reason"}
    assert echo.seen == []


def test_missing_feature_or_plan_is_403(issuer: Issuer, echo: EchoWSGI) -> None:
    rules = (
        Rule("/premium/**", features=("export",)),
        Rule("/any/**", features=("a", "b"), features_mode="any"),
        Rule("/gold/**", plans=("gold",)),
    )
    gate = LicenseGate(echo, gate_config(issuer, rules=rules))
    token = issuer.token(features=("b",), plan="pro")
    r = get(gate, "/premium/x", bearer(token))
    assert r.status == 403
    assert r.headers["www-authenticate"] == INSUFFICIENT_SCOPE
    assert r.json()["error"] == "insufficient_scope"
    assert get(gate, "/gold/x", bearer(token)).status == 403
    assert get(gate, "/any/x", bearer(token)).status == 200
    assert len(echo.seen) == 1


def test_default_policy_deny_answers_404(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer, default_policy="deny"))
    r = get(gate, "/unlisted", bearer(issuer.token()))
    assert r.status == 404 and r.json()["error"] == "not_found"
    assert get(gate, "/public/x").status == 200


def test_head_refusal_has_no_body(issuer: Issuer, echo: EchoWSGI) -> None:
    r = get(LicenseGate(echo, gate_config(issuer)), "/x", method="HEAD")
    assert r.status == 401 and r.body == b"" and int(r.headers["content-length"]) > 0


def test_insane_request_id_is_replaced(issuer: Issuer, echo: EchoWSGI) -> None:
    r = get(LicenseGate(echo, gate_config(issuer)), "/x", ("X-Request-ID", 'a b"<script>'))
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert "<" not in r.headers["x-request-id"]


# -- public paths, preflight, query string ------------------------------------------------


def test_public_paths_need_no_token_and_ignore_a_bad_one(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer))
    assert get(gate, "/public/a").status == 200
    assert "HTTP_X_LICENSE_SUBJECT" not in echo.last and echo.last[CLAIMS_KEY] is None
    assert get(gate, "/public/a", bearer("garbage")).status == 200
    assert "HTTP_X_LICENSE_SUBJECT" not in echo.last
    assert get(gate, "/public/a", bearer(issuer.token(sub="lic_p"))).status == 200
    assert echo.last["HTTP_X_LICENSE_SUBJECT"] == "lic_p"
    assert echo.last[RESULT_KEY].reason == "public"


def test_cors_preflight_passes_but_plain_options_does_not(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer))
    preflight = (("Origin", "https://app.test"), ("Access-Control-Request-Method", "GET"))
    assert get(gate, "/premium/x", *preflight, method="OPTIONS").status == 200
    assert echo.last[RESULT_KEY].reason == "cors_preflight"
    assert get(gate, "/premium/x", method="OPTIONS").status == 401
    assert get(gate, "/premium/x", *preflight, method="GET").status == 401


def test_query_string_never_takes_part_in_matching(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer))
    assert get(gate, "/premium/x?/public/").status == 401
    assert get(gate, "/premium/x?path=/public/../public").status == 401
    assert get(gate, "/public/x?/premium/").status == 200


def test_the_matched_path_is_the_one_forwarded(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer))
    token = issuer.token(features=("export",))
    assert get(gate, "/public/../premium//a/./b?q=1", bearer(token)).status == 200
    assert echo.last["PATH_INFO"] == "/premium/a/b"
    assert echo.last["RAW_URI"] == "/premium/a/b?q=1"
    assert get(gate, "/public/%2e%2e/premium/caf%C3%A9", bearer(token)).status == 200
    assert echo.last["PATH_INFO"] == "/premium/café".encode().decode("latin-1")
    assert echo.last["RAW_URI"] == "/premium/caf%C3%A9"


# -- hooks --------------------------------------------------------------------------------


def test_on_result_sees_every_decision_and_cannot_break_requests(
    issuer: Issuer, echo: EchoWSGI
) -> None:
    seen: list[GateResult] = []

    def hook(decision: GateResult) -> None:
        seen.append(decision)
        raise RuntimeError("a broken hook")

    gate = LicenseGate(echo, gate_config(issuer), on_result=hook)
    assert get(gate, "/public/x").status == 200
    assert get(gate, "/x", bearer("bad")).status == 401
    assert get(gate, "/a;b").status == 400
    assert [(d.allowed, d.reason) for d in seen] == [
        (True, "public"),
        (False, "token_invalid"),
        (False, "bad_path"),
    ]
    assert all(d.client_ip == "127.0.0.1" for d in seen)


# -- revocation ---------------------------------------------------------------------------


def test_revoked_jti_and_sub_are_refused(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(echo, gate_config(issuer, denylist_url="memory://"))
    token, other = issuer.token(sub="lic_r"), issuer.token(sub="lic_s")
    assert get(gate, "/x", bearer(token)).status == 200  # warm in the verifier cache
    denylist = gate.engine.denylist
    assert denylist is not None
    denylist.revoke_jti(issuer.claims_of(token)["jti"], 60)
    r = get(gate, "/x", bearer(token))
    assert r.status == 401 and r.json()["reason"] == "revoked"
    assert get(gate, "/x", bearer(other)).status == 200
    denylist.revoke_sub("lic_s", 60)
    assert get(gate, "/x", bearer(other)).status == 401


def test_revocation_fails_closed_when_redis_is_down(issuer: Issuer, echo: EchoWSGI) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    gate = LicenseGate(echo, gate_config(issuer, denylist_url=dead))
    r = get(gate, "/x", bearer(issuer.token()))
    assert r.status == 503 and r.json()["error"] == "unavailable"
    assert echo.seen == []
    assert gate.readiness()["denylist"] is False
    gate.close()


def test_revocation_fail_open_is_a_separate_choice(issuer: Issuer, echo: EchoWSGI) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    gate = LicenseGate(echo, gate_config(issuer, denylist_url=dead, denylist_fail_open=True))
    assert get(gate, "/x", bearer(issuer.token())).status == 200
    gate.close()


@pytest.mark.redis
def test_revocation_through_redis(issuer: Issuer, echo: EchoWSGI, redis_url: str) -> None:
    gate = LicenseGate(echo, gate_config(issuer, denylist_url=redis_url))
    token = issuer.token(sub="lic_" + uuid.uuid4().hex)
    assert get(gate, "/x", bearer(token)).status == 200
    writer = RedisDenylist.from_uri(redis_url)
    writer.revoke_jti(issuer.claims_of(token)["jti"], 30)
    deadline = time.monotonic() + 5
    while get(gate, "/x", bearer(token)).status == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert get(gate, "/x", bearer(token)).status == 401
    writer.close()
    gate.close()


# -- rate limits ----------------------------------------------------------------------------


def test_rate_limit_429_with_headers(issuer: Issuer, echo: EchoWSGI) -> None:
    rules = (Rule("/limited/**", rate_limit="2/minute"), Rule("/public/**", public=True))
    gate = LicenseGate(echo, gate_config(issuer, rules=rules, ratelimit_key_prefix=unique_prefix()))
    token = issuer.token(sub="lic_rl")
    assert [get(gate, "/limited/a", bearer(token)).status for _ in range(2)] == [200, 200]
    r = get(gate, "/limited/a", bearer(token))
    assert r.status == 429
    assert r.json()["error"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 61
    assert r.headers["x-ratelimit-limit"] == "2"
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["x-ratelimit-reset"]) >= int(time.time())
    # another license has its own budget; unlimited rules are not counted
    assert get(gate, "/limited/a", bearer(issuer.token(sub="lic_other"))).status == 200
    assert all(get(gate, "/public/a", bearer(token)).status == 200 for _ in range(5))


def test_rate_limit_key_is_sub_even_across_tokens(issuer: Issuer, echo: EchoWSGI) -> None:
    rules = (Rule("/**", rate_limit="2/minute"),)
    gate = LicenseGate(echo, gate_config(issuer, rules=rules, ratelimit_key_prefix=unique_prefix()))
    tokens = [issuer.token(sub="lic_same") for _ in range(3)]
    assert [get(gate, "/a", bearer(t)).status for t in tokens] == [200, 200, 429]


def test_rate_limit_by_client_ip_without_a_token(issuer: Issuer, echo: EchoWSGI) -> None:
    gate = LicenseGate(
        echo,
        gate_config(
            issuer,
            ratelimit_default="2/minute",
            trusted_proxies=("10.0.0.0/8",),
            ratelimit_key_prefix=unique_prefix(),
        ),
    )
    spoof = ("X-Forwarded-For", "198.51.100.1")
    statuses = [get(gate, "/public/a", spoof, remote_addr="203.0.113.5").status for _ in range(3)]
    assert statuses == [200, 200, 429]  # an untrusted peer's X-Forwarded-For is ignored
    behind = [
        get(gate, "/public/a", ("X-Forwarded-For", f"198.51.100.{i}"), remote_addr="10.0.0.1")
        for i in (7, 8, 7, 7)
    ]
    assert [r.status for r in behind] == [200, 200, 200, 429]
    assert behind[-1].status == 429


def test_rate_limit_fail_open_and_fail_closed(issuer: Issuer, echo: EchoWSGI) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    rules = (Rule("/**", rate_limit="5/minute"),)
    token = issuer.token()
    open_gate = LicenseGate(echo, gate_config(issuer, rules=rules, ratelimit_storage_url=dead))
    assert get(open_gate, "/a", bearer(token)).status == 200
    closed = LicenseGate(
        echo,
        gate_config(issuer, rules=rules, ratelimit_storage_url=dead, ratelimit_fail_open=False),
    )
    r = get(closed, "/a", bearer(token))
    assert r.status == 503 and r.json()["error"] == "unavailable"
    assert closed.readiness()["ratelimit"] is False


@pytest.mark.redis
@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter"])
def test_rate_limit_in_redis(issuer: Issuer, echo: EchoWSGI, redis_url: str, strategy: str) -> None:
    config = gate_config(
        issuer,
        rules=(Rule("/**", rate_limit="3/minute"),),
        ratelimit_storage_url=redis_url,
        ratelimit_strategy=strategy,
        ratelimit_key_prefix=unique_prefix(),
    )
    token = issuer.token()
    first, second = LicenseGate(echo, config), LicenseGate(echo, config)
    statuses = [get(g, "/a", bearer(token)).status for g in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]
    assert first.readiness() == {"keys": True, "ratelimit": True}


# -- two real processes share one Redis --------------------------------------------------------


def _start_server(port: int, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    support = Path(__file__).with_name("middleware_support.py")
    return subprocess.Popen(
        [sys.executable, str(support), "serve", str(port), json.dumps(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def two_servers(issuer: Issuer, redis_url: str) -> Iterator[list[str]]:
    config = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": issuer.jwks,
        "rules": [
            {"path": "/public/**", "public": True},
            {"path": "/**", "rate_limit": "4/minute"},
        ],
        "ratelimit_storage_url": redis_url,
        "ratelimit_key_prefix": unique_prefix(),
        "denylist_url": redis_url,
    }
    ports = [free_port(), free_port()]
    procs = [_start_server(p, config) for p in ports]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for url, proc in zip(urls, procs, strict=True):
            _wait_up(url + "/public/ping", proc)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.redis
@pytest.mark.slow
def test_two_processes_enforce_one_rate_limit(issuer: Issuer, two_servers: list[str]) -> None:
    token = issuer.token(sub="lic_" + uuid.uuid4().hex[:8])
    auth = {"Authorization": f"Bearer {token}"}
    statuses = [httpx.get(two_servers[i % 2] + "/a", headers=auth).status_code for i in range(6)]
    # alternating: each process allowed two and refused one, so neither counted alone
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert httpx.get(two_servers[0] + "/a", headers=auth).headers["x-ratelimit-limit"] == "4"


@pytest.mark.redis
@pytest.mark.slow
def test_two_processes_see_one_revocation(
    issuer: Issuer, two_servers: list[str], redis_url: str
) -> None:
    token = issuer.token(sub="lic_" + uuid.uuid4().hex[:8])
    auth = {"Authorization": f"Bearer {token}"}
    assert [httpx.get(u + "/a", headers=auth).status_code for u in two_servers] == [200, 200]
    writer = RedisDenylist.from_uri(redis_url)
    writer.revoke_sub(issuer.claims_of(token)["sub"], 60)
    writer.close()
    deadline = time.monotonic() + 5
    statuses: list[int] = []
    while time.monotonic() < deadline:
        statuses = [httpx.get(u + "/a", headers=auth).status_code for u in two_servers]
        if statuses == [401, 401]:
            break
        time.sleep(0.05)
    assert statuses == [401, 401]
