"""RemoteJWKS against a real JWKS server on loopback: lifetimes, refetches, failures, limits.

Time-dependent rules run on an injected clock, so no test sleeps through a TTL.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from flask_licensechain.config import Settings
from flask_licensechain.core.contract import MAX_KID_LENGTH, build_claims
from flask_licensechain.core.errors import Unavailable
from flask_licensechain.core.jwks import RemoteJWKS, check_jwks_url, ttl_from_cache_control
from flask_licensechain.core.keys import SigningKey
from flask_licensechain.core.keysource import StaticKeySource
from flask_licensechain.core.verifier import Check, TokenRejected, TokenVerifier
from flask_licensechain.integrator import build_key_source

KEY_A = SigningKey.generate()
KEY_B = SigningKey.generate()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: send the body in pieces of this size, pausing ``trickle`` seconds between them
    chunk: int = 0
    trickle: float = 0.0


def jwks_body(*keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"keys": [k.jwk() for k in keys] + (extra or [])}).encode()


class JWKSServer:
    """A threaded HTTP server on 127.0.0.1 whose answer each test sets."""

    def __init__(self) -> None:
        self.reply: Callable[[str], Reply] = lambda path: Reply(body=jwks_body(KEY_A))
        self.requests: list[str] = []
        #: the request headers of each request, names in lower case
        self.request_headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                server.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = server.reply(self.path)
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in reply.headers and not reply.chunk:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    if reply.chunk:
                        for i in range(0, len(reply.body), reply.chunk):
                            self.wfile.write(reply.body[i : i + reply.chunk])
                            self.wfile.flush()
                            time.sleep(reply.trickle)
                    else:
                        self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up reading: that is what some tests want

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    srv = JWKSServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def token_for(key: SigningKey, **overrides: Any) -> str:
    claims = build_claims(
        issuer="https://issuer.test",
        license_id="lic_1",
        app_id="app_1",
        seller_tier="pro",
        plan="pro",
        features=["export"],
        license_exp=None,
        hw_bound=False,
        now=int(time.time()),
    )
    claims.update(overrides)
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


# -- lifetimes ----------------------------------------------------------------


def test_fetches_once_then_serves_from_cache_for_the_default_300_s(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    assert set(source.current()) == {KEY_A.kid}
    clock.advance(299)
    source.current()
    assert len(server.requests) == 1
    clock.advance(2)
    source.current()
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("cache_control", "refetch_after"),
    [("public, max-age=120", 120), ("max-age=5", 60), ("max-age=9999999", 86400), ("no-store", 60)],
)
def test_max_age_is_honoured_within_bounds(
    server: JWKSServer, clock: FakeClock, cache_control: str, refetch_after: float
) -> None:
    server.reply = lambda path: Reply(
        body=jwks_body(KEY_A), headers={"Cache-Control": cache_control}
    )
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    clock.advance(refetch_after - 1)
    source.current()
    assert len(server.requests) == 1
    clock.advance(2)
    source.current()
    assert len(server.requests) == 2


def test_ttl_from_cache_control_parsing() -> None:
    assert ttl_from_cache_control(None, 300, 60, 86400) == 300
    assert ttl_from_cache_control("public, max-age=600", 300, 60, 86400) == 600
    assert ttl_from_cache_control('max-age="90"', 300, 60, 86400) == 90
    assert ttl_from_cache_control("s-maxage=10", 300, 60, 86400) == 300
    assert ttl_from_cache_control("max-age=abc", 300, 60, 86400) == 300
    assert ttl_from_cache_control("no-cache", 300, 60, 86400) == 60


# -- unknown kids -------------------------------------------------------------


def test_unknown_kid_refetches_once_then_cools_down(server: JWKSServer, clock: FakeClock) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    assert source.lookup_unknown("nope-1") is None
    assert len(server.requests) == 2
    # Within the cooldown no kid triggers a fetch, known-missing or new.
    assert source.lookup_unknown("nope-2") is None
    clock.advance(29)
    assert source.lookup_unknown("nope-3") is None
    assert len(server.requests) == 2
    # After it, a new kid may refetch, but the remembered one still does not.
    clock.advance(2)
    assert source.lookup_unknown("nope-1") is None
    assert len(server.requests) == 2
    assert source.lookup_unknown("nope-4") is None
    assert len(server.requests) == 3


def test_remembered_unknown_kids_are_bounded_in_number_and_time(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock, max_unknown_kids=2, unknown_kid_ttl=100)
    source.current()
    for n in range(3):
        source.lookup_unknown(f"gone-{n}")
        clock.advance(31)
    assert len(server.requests) == 4
    # gone-0 was pushed out of the set of 2: it may trigger a fetch again.
    assert source.lookup_unknown("gone-0") is None
    assert len(server.requests) == 5
    clock.advance(101)  # gone-2 (remembered) has aged out too
    assert source.lookup_unknown("gone-2") is None
    assert len(server.requests) == 6


def test_rotated_key_is_found_by_one_refetch_and_verifies(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    verifier = TokenVerifier(source, issuer="https://issuer.test", audience="app_1")
    verifier.verify(token_for(KEY_A))
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B))
    claims = verifier.verify(token_for(KEY_B))
    assert claims.kid == KEY_B.kid
    assert len(server.requests) == 2


def test_concurrent_unknown_kid_refetches_are_merged_into_one(server: JWKSServer) -> None:
    source = RemoteJWKS(server.url)
    source.current()
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B), delay=0.3)
    barrier = threading.Barrier(8)
    found: list[bool] = []

    def look() -> None:
        barrier.wait()
        found.append(source.lookup_unknown(KEY_B.kid) is not None)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found == [True] * 8
    assert len(server.requests) == 2


def test_concurrent_first_fetches_are_merged_into_one(server: JWKSServer) -> None:
    server.reply = lambda path: Reply(body=jwks_body(KEY_A), delay=0.3)
    source = RemoteJWKS(server.url)
    barrier = threading.Barrier(6)
    kids: list[set[str]] = []

    def first() -> None:
        barrier.wait()
        kids.append(set(source.current()))

    threads = [threading.Thread(target=first) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kids == [{KEY_A.kid}] * 6
    assert len(server.requests) == 1


# -- failures -------------------------------------------------------------------


def test_endpoint_down_serves_last_good_set_for_the_stale_window(
    server: JWKSServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = RemoteJWKS(server.url, clock=clock, stale_window=600)
    source.current()
    server.reply = lambda path: Reply(status=503, body=b"down")
    clock.advance(301)
    with caplog.at_level(logging.WARNING, logger="licensechain.jwks"):
        assert set(source.current()) == {KEY_A.kid}
    assert "serving the last good set" in caplog.text
    assert source.ready()
    clock.advance(600)
    with pytest.raises(Unavailable):
        source.current()
    assert not source.ready()
    # The endpoint comes back: the next attempt after the backoff restores service.
    server.reply = lambda path: Reply(body=jwks_body(KEY_A))
    clock.advance(31)
    assert set(source.current()) == {KEY_A.kid}


def test_failed_refreshes_are_retried_with_backoff_not_per_request(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    server.reply = lambda path: Reply(status=500)
    clock.advance(301)
    for _ in range(20):
        source.current()
    assert len(server.requests) == 2


def test_first_fetch_failure_is_unavailable_not_invalid_token(
    server: JWKSServer, clock: FakeClock
) -> None:
    server.reply = lambda path: Reply(status=500)
    source = RemoteJWKS(server.url, clock=clock)
    verifier = TokenVerifier(source)
    with pytest.raises(Unavailable) as err:
        verifier.verify(token_for(KEY_A))
    assert err.value.status_code == 503
    assert not source.ready()


def test_key_missing_from_a_fetched_set_stops_verifying_at_once(
    server: JWKSServer, clock: FakeClock
) -> None:
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B))
    source = RemoteJWKS(server.url, clock=clock)
    verifier = TokenVerifier(source)
    token = token_for(KEY_B)
    verifier.verify(token)
    verifier.verify(token)  # served by the verified-token cache
    server.reply = lambda path: Reply(body=jwks_body(KEY_A))
    clock.advance(301)
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token)
    assert err.value.check == Check.UNKNOWN_KID
    assert verifier.verify(token_for(KEY_A)).kid == KEY_A.kid


def test_refresh_keeps_unchanged_key_objects(server: JWKSServer, clock: FakeClock) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    before = source.current()[KEY_A.kid]
    clock.advance(301)
    assert source.current()[KEY_A.kid] is before
    assert len(server.requests) == 2


# -- fetching limits ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://example.com/jwks", "ftp://127.0.0.1/jwks", "file:///etc/passwd", "https:///nohost"],
)
def test_refuses_plain_http_and_other_schemes(url: str) -> None:
    with pytest.raises(ValueError):
        RemoteJWKS(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9000/jwks",
    ],
)
def test_accepts_https_and_loopback_http(url: str) -> None:
    assert str(check_jwks_url(url)) == url


def test_plain_http_elsewhere_needs_explicit_opt_in() -> None:
    assert RemoteJWKS("http://issuer.internal/jwks", allow_http=True).url.startswith("http://")


def test_redirects_are_not_followed(server: JWKSServer) -> None:
    target = server.url + "-moved"
    server.reply = lambda path: (
        Reply(body=jwks_body(KEY_A))
        if path.endswith("-moved")
        else Reply(status=302, headers={"Location": target})
    )
    source = RemoteJWKS(server.url)
    with pytest.raises(Unavailable):
        source.current()
    assert server.requests == ["/jwks"]


def test_oversized_response_is_abandoned(server: JWKSServer) -> None:
    padding = [{"kty": "oct", "k": "x" * 1000, "kid": f"pad{i}"} for i in range(80)]
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, extra=padding), chunk=4096)
    with pytest.raises(Unavailable):
        RemoteJWKS(server.url).current()


def test_oversized_declared_length_is_refused(server: JWKSServer) -> None:
    big = jwks_body(KEY_A, extra=[{"kty": "oct", "k": "x" * 70_000}])
    server.reply = lambda path: Reply(body=big)
    with pytest.raises(Unavailable):
        RemoteJWKS(server.url).current()
    # the same set under the cap is fine
    server.reply = lambda path: Reply(body=jwks_body(KEY_A))
    assert RemoteJWKS(server.url).ready()


def test_slow_trickling_response_hits_the_timeout(server: JWKSServer) -> None:
    body = jwks_body(KEY_A)
    server.reply = lambda path: Reply(body=body, chunk=64, trickle=0.2)
    with pytest.raises(Unavailable):
        RemoteJWKS(server.url, timeout=0.5).current()


def test_compressed_response_is_refused(server: JWKSServer) -> None:
    server.reply = lambda path: Reply(
        body=gzip.compress(jwks_body(KEY_A)), headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(Unavailable):
        RemoteJWKS(server.url).current()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"keys": "x"}', b"[" * 5000])
def test_bad_documents_are_fetch_failures(server: JWKSServer, body: bytes) -> None:
    server.reply = lambda path: Reply(body=body)
    assert not RemoteJWKS(server.url).ready()


def test_overlong_kids_and_foreign_keys_in_the_set_are_ignored(server: JWKSServer) -> None:
    long_kid = dict(KEY_B.jwk(), kid="k" * (MAX_KID_LENGTH + 1))
    wrong_use = dict(SigningKey.generate().jwk(), use="enc")
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, extra=[long_kid, wrong_use]))
    assert set(RemoteJWKS(server.url).current()) == {KEY_A.kid}


def test_one_kid_with_two_different_keys_trusts_neither(server: JWKSServer) -> None:
    clash = dict(KEY_B.jwk(), kid=KEY_A.kid)
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B, extra=[clash]))
    assert set(RemoteJWKS(server.url).current()) == {KEY_B.kid}


def _refresh_in_child(source: RemoteJWKS, out: Any) -> None:
    out.put(source.refresh())


def test_a_forked_child_fetches_with_its_own_connection(server: JWKSServer) -> None:
    source = RemoteJWKS(server.url)
    source.current()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_refresh_in_child, args=(source, out))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert out.get(timeout=1) is True
    assert len(server.requests) == 2


# -- integrator mode --------------------------------------------------------------


def test_build_key_source_by_settings(tmp_path: Any) -> None:
    remote = build_key_source(Settings(jwks_url="https://issuer.example/v1/licenses/jwks"))
    assert isinstance(remote, RemoteJWKS)
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks_body(KEY_A))
    static = build_key_source(Settings(jwks_file=str(path)))
    assert isinstance(static, StaticKeySource)
    assert set(static.current()) == {KEY_A.kid}
    with pytest.raises(ValueError):
        build_key_source(Settings(jwks_url="http://issuer.example/jwks"))
    with pytest.raises(ValueError):
        build_key_source(Settings(jwks_url="https://a.example/j", jwks_file=str(path)))
