"""RemoteJWKS's fetch at its edges: TLS by default, the request it sends, exact size limits,
RFC 9111 freshness boundaries, retry backoff, and its settings' bounds."""

from __future__ import annotations

import datetime
import ipaddress
import multiprocessing
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_jwks_cache import (
    KEY_A,
    KEY_B,
    FakeClock,
    JWKSServer,
    Reply,
    _refresh_in_child,
    jwks_body,
)

from flask_licensechain.core.contract import MAX_KID_LENGTH
from flask_licensechain.core.errors import Unavailable
from flask_licensechain.core.jwks import RemoteJWKS, check_jwks_url, is_loopback_host


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


# -- TLS and URLs ----------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_tls_certificates_are_verified_by_default(server: JWKSServer, tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd: ThreadingHTTPServer = server.httpd
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    url = server.url.replace("http://", "https://")
    with pytest.raises(Unavailable):  # a certificate no trusted CA signed
        RemoteJWKS(url).current()
    trusting = ssl.create_default_context(cafile=str(cert_file))
    assert KEY_A.kid in RemoteJWKS(url, verify=trusting).current()


def test_plain_http_to_another_host_is_refused_by_default() -> None:
    with pytest.raises(ValueError):
        check_jwks_url("http://issuer.example/jwks")
    assert str(check_jwks_url("http://issuer.example/jwks", allow_http=True)).startswith("http:")


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "127.9.9.9", "::1", "[::1]"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["example.com", "10.0.0.1", "[::2]", "localhost.evil", "", "X127.0.0.1"]
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


# -- the request and the response ------------------------------------------------------------------


def test_request_asks_for_json_without_compression(server: JWKSServer) -> None:
    RemoteJWKS(server.url).current()
    headers = server.request_headers[-1]
    assert headers["accept"].lower() == "application/json"
    assert headers["accept-encoding"].lower() == "identity"


def test_declared_content_encoding_is_refused_even_for_a_plain_body(server: JWKSServer) -> None:
    # A server that labels its body gzip is not trusted to send what it says, either way.
    server.reply = lambda path: Reply(body=jwks_body(KEY_A), headers={"Content-Encoding": "gzip"})
    with pytest.raises(Unavailable):
        RemoteJWKS(server.url).current()


@pytest.mark.parametrize("encoding", ["identity", "IDENTITY", " identity ", ""])
def test_identity_content_encoding_is_accepted(server: JWKSServer, encoding: str) -> None:
    server.reply = lambda path: Reply(body=jwks_body(KEY_A), headers={"Content-Encoding": encoding})
    assert KEY_A.kid in RemoteJWKS(server.url).current()


def test_response_of_exactly_max_bytes_is_accepted(server: JWKSServer) -> None:
    body = jwks_body(KEY_A)
    assert KEY_A.kid in RemoteJWKS(server.url, max_bytes=len(body)).current()
    with pytest.raises(Unavailable):
        RemoteJWKS(server.url, max_bytes=len(body) - 1).current()


def test_streamed_response_of_exactly_max_bytes_is_accepted(server: JWKSServer) -> None:
    body = jwks_body(KEY_A, KEY_B)
    server.reply = lambda path: Reply(body=body, chunk=100)  # no Content-Length: streamed
    keys = RemoteJWKS(server.url, max_bytes=len(body)).current()
    assert {KEY_A.kid, KEY_B.kid} <= set(keys)  # every chunk kept, not only the last
    with pytest.raises(Unavailable):
        RemoteJWKS(server.url, max_bytes=len(body) - 1).current()


# -- freshness boundaries (RFC 9111 section 4.2: fresh while age < lifetime) -----------------------


def test_set_is_refetched_exactly_when_its_lifetime_ends(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    clock.advance(299.5)  # (halves: the clock lands exactly on the boundary)
    source.current()
    assert len(server.requests) == 1
    clock.advance(0.5)
    source.current()
    assert len(server.requests) == 2


def test_stale_set_is_served_until_exactly_the_end_of_the_stale_window(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock, stale_window=100)
    source.current()
    server.reply = lambda path: Reply(status=500)
    clock.advance(300 + 99.5)
    assert KEY_A.kid in source.current()
    clock.advance(0.5)
    with pytest.raises(Unavailable):
        source.current()


def test_failed_fetches_back_off_1_2_4_seconds_up_to_30(
    server: JWKSServer, clock: FakeClock
) -> None:
    server.reply = lambda path: Reply(status=500)
    source = RemoteJWKS(server.url, clock=clock)
    expected = 0
    for backoff in (1, 2, 4, 8, 16, 30, 30):
        with pytest.raises(Unavailable):
            source.current()
        expected += 1
        assert (len(server.requests), source.fetch_count) == (expected, expected)
        clock.advance(backoff - 0.5)
        with pytest.raises(Unavailable):
            source.current()  # still backing off: no request
        assert len(server.requests) == expected
        clock.advance(0.5)
    # a success resets the backoff: the next failure waits 1 s again
    server.reply = lambda path: Reply(body=jwks_body(KEY_A))
    assert KEY_A.kid in source.current()
    server.reply = lambda path: Reply(status=500)
    clock.advance(300)
    source.current()  # fails, serves the stale set
    clock.advance(1)
    source.current()
    assert len(server.requests) == expected + 3


# -- unknown kids ----------------------------------------------------------------------------------


def test_unknown_kid_of_exactly_max_kid_length_triggers_a_refetch(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    assert source.lookup_unknown("k" * (MAX_KID_LENGTH + 1)) is None
    assert source.lookup_unknown("") is None
    assert source.lookup_unknown(7) is None  # type: ignore[arg-type]
    assert len(server.requests) == 1
    assert source.lookup_unknown("k" * MAX_KID_LENGTH) is None
    assert len(server.requests) == 2


def test_cooldown_and_remembered_kid_end_exactly_on_time(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock, miss_cooldown=30, unknown_kid_ttl=60)
    source.current()
    assert source.lookup_unknown("missing") is None  # refetch 2, cooldown until +30
    clock.advance(29.5)
    assert source.lookup_unknown("other") is None
    assert len(server.requests) == 2
    clock.advance(0.5)
    assert source.lookup_unknown("other") is None  # cooldown over: refetch 3
    assert len(server.requests) == 3
    clock.advance(30)  # +60 since "missing" was remembered; cooldown of "other" over too
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B))
    assert source.lookup_unknown("missing") is None  # remembered until exactly now: refetches
    assert len(server.requests) == 4


def test_unknown_kid_with_no_set_and_the_endpoint_down_is_none(
    server: JWKSServer, clock: FakeClock
) -> None:
    server.reply = lambda path: Reply(status=500)
    source = RemoteJWKS(server.url, clock=clock)
    assert source.lookup_unknown(KEY_A.kid) is None


def test_a_kid_found_later_is_no_longer_remembered_unknown(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock, miss_cooldown=30, unknown_kid_ttl=3600)
    source.current()
    assert source.lookup_unknown(KEY_B.kid) is None  # remembered unknown for an hour
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B))
    clock.advance(300)
    assert KEY_B.kid in source.current()  # the refresh brings it: forgotten as unknown
    server.reply = lambda path: Reply(body=jwks_body(KEY_A))
    clock.advance(300)
    source.current()  # B left again
    clock.advance(30)
    assert source.lookup_unknown(KEY_B.kid) is None
    assert len(server.requests) == 5  # it was looked for again, not answered from memory


def test_a_failed_refetch_does_not_remember_the_kid_as_unknown(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock, miss_cooldown=30, unknown_kid_ttl=3600)
    source.current()
    server.reply = lambda path: Reply(status=500)
    assert source.lookup_unknown(KEY_B.kid) is None  # the fetch failed: nothing proven
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B))
    clock.advance(30)  # past the cooldown and the 1 s retry backoff
    assert source.lookup_unknown(KEY_B.kid) is not None
    assert len(server.requests) == 3


def test_remembered_unknown_kids_keep_exactly_max_unknown_kids(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock, miss_cooldown=30, max_unknown_kids=2)
    source.current()
    for kid in ("u1", "u2", "u3"):
        assert source.lookup_unknown(kid) is None
        clock.advance(30)
    assert len(server.requests) == 4
    # u2 and u3 are remembered (two of them): no refetch; u1 was evicted: refetched
    assert source.lookup_unknown("u3") is None and source.lookup_unknown("u2") is None
    assert len(server.requests) == 4
    assert source.lookup_unknown("u1") is None
    assert len(server.requests) == 5


def _two_concurrent_lookups(
    server: JWKSServer, source: RemoteJWKS, kids: tuple[str, str], status: int = 200
) -> list[object]:
    """The first lookup's fetch is held by the server for a second while the second waits."""
    arrived = threading.Event()
    body = jwks_body(KEY_A, KEY_B)

    def held(path: str) -> Reply:
        arrived.set()
        return Reply(status=status, body=body, delay=1.0)

    server.reply = held
    found: list[object] = ["not answered", "not answered"]

    def look(index: int) -> None:
        found[index] = source.lookup_unknown(kids[index])

    first = threading.Thread(target=look, args=(0,))
    first.start()
    assert arrived.wait(10)
    second = threading.Thread(target=look, args=(1,))
    second.start()
    first.join(10)
    second.join(10)
    return found


def test_a_lookup_waiting_behind_a_slow_fetch_gets_its_result(server: JWKSServer) -> None:
    clock = FakeClock()
    source = RemoteJWKS(server.url, clock=clock)
    first, second = _two_concurrent_lookups(server, source, (KEY_B.kid, KEY_B.kid))
    assert first is not None and second is not None
    assert len(server.requests) == 1


def test_a_merged_lookup_remembers_its_missing_kid(server: JWKSServer) -> None:
    clock = FakeClock()
    source = RemoteJWKS(server.url, clock=clock, miss_cooldown=30, unknown_kid_ttl=3600)
    assert _two_concurrent_lookups(server, source, ("ghost1", "ghost2")) == [None, None]
    assert len(server.requests) == 1  # merged
    clock.advance(30)  # cooldown over: only a remembered kid is answered without a fetch
    assert source.lookup_unknown("ghost2") is None
    assert len(server.requests) == 1


def test_a_lookup_merged_into_a_failed_fetch_does_not_remember_its_kid(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock, miss_cooldown=30, unknown_kid_ttl=3600)
    source.current()
    clock.advance(300)  # the set is due: the merged fetch below fails and proves nothing
    assert _two_concurrent_lookups(server, source, ("ghost1", "ghost2"), status=500) == [None] * 2
    assert len(server.requests) == 2
    server.reply = lambda path: Reply(body=jwks_body(KEY_A))
    clock.advance(30)
    assert source.lookup_unknown("ghost2") is None
    assert len(server.requests) == 3  # looked for again


def test_unknown_kid_refetches_exactly_when_the_retry_backoff_ends(
    server: JWKSServer, clock: FakeClock
) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    server.reply = lambda path: Reply(status=500)
    clock.advance(300)
    source.current()  # the refresh fails: the next attempt waits 1 s
    assert len(server.requests) == 2
    clock.advance(0.5)
    assert source.lookup_unknown(KEY_B.kid) is None
    assert len(server.requests) == 2
    clock.advance(0.5)
    server.reply = lambda path: Reply(body=jwks_body(KEY_A, KEY_B))
    assert source.lookup_unknown(KEY_B.kid) is not None
    assert len(server.requests) == 3


def test_refresh_waits_for_a_fetch_in_flight_and_reports_its_result(server: JWKSServer) -> None:
    clock = FakeClock()
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    clock.advance(300)  # due
    arrived = threading.Event()

    def held(path: str) -> Reply:
        arrived.set()
        return Reply(body=jwks_body(KEY_A), delay=1.0)

    server.reply = held
    refresher = threading.Thread(target=source.current)
    refresher.start()
    assert arrived.wait(10)
    assert source.refresh() is True  # merged with the fetch in flight, which succeeded
    refresher.join(10)
    assert len(server.requests) == 2


# -- refresh(), close(), a refresh in flight -------------------------------------------------------


def test_refresh_reports_whether_the_set_is_fresh(server: JWKSServer, clock: FakeClock) -> None:
    source = RemoteJWKS(server.url, clock=clock)
    assert source.refresh() is True
    assert source.fetch_count == 1
    server.reply = lambda path: Reply(status=500)
    assert source.refresh() is True  # failed, but the set in hand is still fresh
    clock.advance(300)
    assert source.refresh() is False  # failed, and the set in hand is due
    assert source.fetch_count == 3
    source.close()
    source.close()  # twice is harmless
    server.reply = lambda path: Reply(body=jwks_body(KEY_A))
    assert source.refresh() is True  # a new connection after close()


def test_stale_set_is_served_while_another_thread_refreshes(server: JWKSServer) -> None:
    clock = FakeClock()
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    release = threading.Event()
    started = threading.Event()

    def slow(path: str) -> Reply:
        started.set()
        release.wait(10)
        return Reply(body=jwks_body(KEY_A))

    server.reply = slow
    clock.advance(301)
    refresher = threading.Thread(target=source.current)
    refresher.start()
    assert started.wait(10)
    answered: list[tuple[bool, int]] = []
    reader = threading.Thread(
        target=lambda: answered.append((KEY_A.kid in source.current(), source.fetch_count))
    )
    reader.start()
    reader.join(10)
    # the reader was answered while the refresh was still waiting on the server: the fetch
    # count had not moved past the first fetch yet
    assert answered == [(True, 1)] and not reader.is_alive()
    release.set()
    refresher.join(10)


def test_a_child_forked_during_a_fetch_does_not_inherit_the_held_lock(
    server: JWKSServer,
) -> None:
    clock = FakeClock()
    source = RemoteJWKS(server.url, clock=clock)
    source.current()
    clock.advance(300)  # due: refresh() then reports whether its own fetch succeeded
    arrived = threading.Event()

    def first_held(path: str) -> Reply:
        if len(server.requests) == 2:  # the parent's refresh: held while the child forks
            arrived.set()
            return Reply(body=jwks_body(KEY_A), delay=1.5)
        return Reply(body=jwks_body(KEY_A))

    server.reply = first_held
    refresher = threading.Thread(target=source.current)
    refresher.start()
    assert arrived.wait(10)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_refresh_in_child, args=(source, out))
    child.start()
    child.join(30)
    refresher.join(10)
    assert child.exitcode == 0
    assert out.get(timeout=1) is True  # the child fetched at once, with a lock of its own


# -- settings' bounds ------------------------------------------------------------------------------


def test_settings_are_clamped() -> None:
    url = "https://issuer.example/jwks"
    low = RemoteJWKS(
        url, timeout=0, unknown_kid_ttl=-5, max_unknown_kids=0, stale_window=-1, max_bytes=0
    )
    assert (low.timeout, low.unknown_kid_ttl, low.max_unknown_kids) == (0.1, 0.0, 1)
    assert (low.stale_window, low.max_bytes) == (0.0, 1)
    assert RemoteJWKS(url, timeout=0.5).timeout == 0.5
    assert RemoteJWKS(url, timeout=60).timeout == 2.0
    assert RemoteJWKS(url, miss_cooldown=1).miss_cooldown == 30.0
    assert RemoteJWKS(url, min_ttl=100, max_ttl=10).max_ttl == 100.0
    assert RemoteJWKS(url).fetch_count == 0
