"""The verifier's first-seen-token path: the compact-form checks, canonical base64url,
and the cache of checked header segments (bounded, and never a substitute for the key)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from flask_licensechain.core import verifier
from flask_licensechain.core.contract import ALGORITHM, build_claims
from flask_licensechain.core.keys import SigningKey
from flask_licensechain.core.keysource import PublicKeys
from flask_licensechain.core.verifier import Check, TokenRejected, TokenVerifier

ISSUER = "https://licenses.cold"
AUDIENCE = "app_cold"


class MutableKeys:
    """A key source whose set the test changes."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys: PublicKeys = {k.kid: k.public_key for k in keys}

    def current(self) -> PublicKeys:
        return self.keys

    def lookup_unknown(self, kid: str) -> Any:
        return None


def _token(key: SigningKey, **header: Any) -> str:
    claims = build_claims(
        issuer=ISSUER, license_id="lic_cold", app_id=AUDIENCE, seller_tier="pro", plan="pro",
        features=["a"], license_exp=None, hw_bound=False, now=int(time.time()),
    )  # fmt: skip
    return jwt.encode(
        claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, **header}
    )


def _verifier(keys: MutableKeys) -> TokenVerifier:
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)  # type: ignore[arg-type]


def _check(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token)
    return err.value.check


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def test_a_cached_header_still_needs_its_key_in_the_set(key: SigningKey) -> None:
    keys = MutableKeys(key)
    verifier = _verifier(keys)
    verifier.verify(_token(key))
    keys.keys = {}  # the key left the set: the next token with that header is refused
    verifier.clear_cache()
    assert _check(verifier, _token(key)) == Check.UNKNOWN_KID


def test_refused_headers_are_never_cached_and_the_cache_is_bounded(key: SigningKey) -> None:
    verifier = _verifier(MutableKeys(key))
    bad = _token(key, crit=["exp"])
    for _ in range(2):
        assert _check(verifier, bad) == Check.UNSUPPORTED_CRIT
    for i in range(600):  # headers a client makes up: distinct, well formed, unknown kid
        assert _check(verifier, _token(key, x=i, kid=f"k{i}")) == Check.UNKNOWN_KID
    assert len(verifier._headers) <= 256
    verifier.verify(_token(key))


def _with_last_char(segment: str, bits: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) | bits]


@pytest.mark.parametrize("segment", [0, 2])
def test_non_canonical_base64url_is_malformed(key: SigningKey, segment: int) -> None:
    verifier = _verifier(MutableKeys(key))
    token = _token(key)
    parts = token.split(".")
    for _ in range(4):  # find a header/signature length with unused bits: pad the header
        if len(parts[segment]) % 4 in (2, 3):
            break
        token = _token(key, p="x" * (len(parts[0]) % 7 + 1))
        parts = token.split(".")
    rest = len(parts[segment]) % 4
    assert rest in (2, 3)
    # The decoded bytes stay the same: only the unused low bits differ.
    parts[segment] = _with_last_char(parts[segment], 0x01)
    altered = ".".join(parts)
    assert base64.urlsafe_b64decode(parts[segment] + "==") is not None
    assert _check(verifier, altered) == Check.MALFORMED
    verifier.verify(token)


@pytest.mark.parametrize(
    "token",
    [
        ".e30.c2ln",
        "e30..c2ln",
        "e30.e30",
        "e30.e30.c2ln.c2ln",
        "e30.e30.c2l=",
        "e30.e30.c2l+",
        "e30.e30.c2l/",
        "e30.e30.c2é",
        "e30 .e30.c2ln",
        "e30.e30.c2ln\n",
        "",
    ],
)
def test_anything_but_three_base64url_segments_is_malformed(key: SigningKey, token: str) -> None:
    assert _check(_verifier(MutableKeys(key)), token) == Check.MALFORMED


def test_an_empty_signature_is_judged_by_the_header(key: SigningKey) -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
    token = header.decode() + ".e30."
    assert _check(_verifier(MutableKeys(key)), token) == Check.ALG_NOT_ALLOWED


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1}',
        b' {"a":1} ',
        b'{"a":1}\n',
        b'\xef\xbb\xbf{"a":1}',
        '{"a":1}'.encode("utf-16"),
        b'{"a":1}{"b":2}',
        b'{"a":NaN,"b":Infinity}',
        b'{"a":1,"a":2}',
        b'{"a":"\xff"}',
        b"{}",
        b"[]",
        b"{",
        b"}",
    ],
)
def test_the_json_shortcut_answers_as_json_loads(data: bytes) -> None:

    try:
        expected: Any = ("value", json.loads(data))
    except ValueError as exc:
        expected = ("error", type(exc))
    try:
        got: Any = ("value", verifier._loads(data))
    except ValueError as exc:
        got = ("error", type(exc))
    assert repr(got) == repr(expected)
