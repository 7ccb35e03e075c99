"""TokenVerifier: the contract's rules on an injected clock, and the verified-token cache."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from sys import getsizeof
from types import MappingProxyType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from flask_licensechain.core import verifier as verifier_module
from flask_licensechain.core.contract import MAX_LEEWAY, build_claims
from flask_licensechain.core.denylist import MemoryDenylist
from flask_licensechain.core.errors import Unavailable
from flask_licensechain.core.keyring import KeyRing, RingKey
from flask_licensechain.core.keys import SigningKey
from flask_licensechain.core.keysource import PublicKeys, StaticKeySource
from flask_licensechain.core.verifier import Check, TokenRejected, TokenVerifier

ISSUER = "https://issuer.test"
APP = "app_1"
NOW = 1_800_000_000
KEY = SigningKey.generate()
OTHER = SigningKey.generate()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MutableKeys:
    """A key source whose set a test changes, like a JWKS refresh would."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys: PublicKeys = MappingProxyType({k.kid: k.public_key for k in keys})
        self.extra: dict[str, rsa.RSAPublicKey] = {}
        self.unknown_lookups: list[str] = []

    def current(self) -> PublicKeys:
        return self.keys

    def lookup_unknown(self, kid: str) -> rsa.RSAPublicKey | None:
        self.unknown_lookups.append(kid)
        return self.extra.get(kid)


def make_token(key: SigningKey = KEY, now: int = NOW, kid: str | None = None, **claims: Any) -> str:
    body = build_claims(
        issuer=ISSUER,
        license_id=claims.pop("sub", "lic_1"),
        app_id=APP,
        seller_tier="pro",
        plan="pro",
        features=["export", "reports"],
        license_exp=None,
        hw_bound=False,
        now=now,
    )
    body.update(claims)
    return jwt.encode(body, key.private_key, algorithm="RS256", headers={"kid": kid or key.kid})


def make_verifier(keys: Any = None, **kwargs: Any) -> TokenVerifier:
    kwargs.setdefault("issuer", ISSUER)
    kwargs.setdefault("audience", APP)
    kwargs.setdefault("clock", Clock())
    return TokenVerifier(keys or MutableKeys(KEY), **kwargs)


class CountingDecode:
    """Counts the RSA signature checks of the verifier module (a cache hit makes none)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self.calls = 0
        self._check = verifier_module._signature_ok
        self._patch = pytest.MonkeyPatch()
        self._patch.setattr(verifier_module, "_signature_ok", self)

    def __call__(self, *args: Any) -> bool:
        self.calls += 1
        return self._check(*args)


@pytest.fixture(autouse=True)
def _undo_counting() -> Iterator[None]:
    original = verifier_module._signature_ok
    yield
    verifier_module._signature_ok = original


# -- settings ------------------------------------------------------------------


def test_leeway_defaults_to_30_and_is_capped() -> None:
    assert make_verifier().leeway == 30
    assert make_verifier(leeway=10_000).leeway == MAX_LEEWAY == 300
    assert make_verifier(leeway=-5).leeway == 0


def test_empty_issuer_and_audience_mean_not_configured() -> None:
    verifier = make_verifier(issuer="", audience="")
    assert verifier.issuer is None and verifier.audience is None
    assert verifier.verify(make_token(iss="anyone", aud="any_app")).sub == "lic_1"


def test_audience_may_be_a_list_of_accepted_apps() -> None:
    verifier = make_verifier(audience=["app_0", APP])
    assert verifier.verify(make_token()).app_id == APP


def test_per_call_audience_is_required_on_cold_and_cached_paths() -> None:
    verifier = make_verifier(audience=None)
    token = make_token()
    with pytest.raises(TokenRejected) as exc:
        verifier.verify(token, audience="app_other")
    assert exc.value.check == Check.AUDIENCE_MISMATCH
    assert verifier.verify(token, audience=APP).sub == "lic_1"
    # now cached: the per-call audience still applies to the cached claims
    with pytest.raises(TokenRejected) as exc:
        verifier.verify(token, audience="app_other")
    assert exc.value.check == Check.AUDIENCE_MISMATCH


# -- time, on the injected clock -------------------------------------------------


def test_time_rules_use_the_injected_clock_on_the_cold_path() -> None:
    token = make_token()  # exp = NOW + 3600 (advanced tier)
    assert make_verifier(clock=Clock(NOW + 3600 + 29)).verify(token).exp == NOW + 3600
    with pytest.raises(TokenRejected) as err:
        make_verifier(clock=Clock(NOW + 3600 + 30)).verify(token)
    assert (err.value.check, err.value.reason) == (Check.EXPIRED, "token_expired")
    with pytest.raises(TokenRejected) as err:
        make_verifier(clock=Clock(NOW - 31)).verify(token)
    assert err.value.check == Check.NOT_YET_VALID
    assert make_verifier(clock=Clock(NOW - 30)).verify(token).sub == "lic_1"


def test_leeway_zero_is_strict() -> None:
    token = make_token()
    with pytest.raises(TokenRejected):
        make_verifier(leeway=0, clock=Clock(NOW + 3600)).verify(token)
    with pytest.raises(TokenRejected):
        make_verifier(leeway=0, clock=Clock(NOW - 1)).verify(token)


# -- the verified-token cache ------------------------------------------------------


def test_repeat_presentation_skips_the_signature_check() -> None:
    verifier = make_verifier()
    decode = CountingDecode(verifier)
    token = make_token()
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert decode.calls == 1


def test_cache_hit_still_checks_expiry_and_forgets_the_entry() -> None:
    clock = Clock()
    verifier = make_verifier(clock=clock)
    token = make_token()
    verifier.verify(token)
    clock.now = NOW + 3600 + 30
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token)
    assert err.value.check == Check.EXPIRED
    assert verifier.cache_len == 0


def test_cache_hit_still_checks_the_denylist() -> None:
    denylist = MemoryDenylist(clock=lambda: NOW)
    verifier = make_verifier(denylist=denylist)
    token, other = make_token(), make_token(sub="lic_2")
    verifier.verify(token)
    verifier.verify(other)
    claims = verifier.verify(token)
    denylist.revoke_jti(claims.jti, 60)
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token)
    assert (err.value.check, err.value.reason) == (Check.REVOKED, "token_revoked")
    denylist.revoke_sub("lic_2", 60)
    with pytest.raises(TokenRejected):
        verifier.verify(other)


def test_a_revoked_token_is_never_answered_valid_even_on_first_sight() -> None:
    denylist = MemoryDenylist(clock=lambda: NOW)
    denylist.revoke_sub("lic_1", 60)
    verifier = make_verifier(denylist=denylist)
    for _ in range(2):
        with pytest.raises(TokenRejected):
            verifier.verify(make_token())


def test_cached_entry_dies_when_its_key_leaves_the_set() -> None:
    keys = MutableKeys(KEY, OTHER)
    verifier = make_verifier(keys)
    token = make_token(OTHER)
    verifier.verify(token)
    keys.keys = MappingProxyType({KEY.kid: KEY.public_key})
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token)
    assert err.value.check == Check.UNKNOWN_KID


def test_cached_entry_dies_when_its_kid_now_names_other_key_material() -> None:
    keys = MutableKeys(KEY)
    verifier = make_verifier(keys)
    token = make_token()
    verifier.verify(token)
    keys.keys = MappingProxyType({KEY.kid: OTHER.public_key})
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token)
    assert err.value.check == Check.BAD_SIGNATURE


def test_cache_survives_a_refresh_that_rebuilds_the_same_key() -> None:
    keys = MutableKeys(KEY)
    verifier = make_verifier(keys)
    decode = CountingDecode(verifier)
    token = make_token()
    verifier.verify(token)
    rebuilt = StaticKeySource({"keys": [KEY.jwk()]}).current()
    assert rebuilt[KEY.kid] is not KEY.public_key
    keys.keys = rebuilt
    verifier.verify(token)
    verifier.verify(token)
    assert decode.calls == 1


def test_lru_is_bounded_and_keeps_recently_used_tokens() -> None:
    verifier = make_verifier(cache_size=3)
    tokens = [make_token(sub=f"lic_{i}") for i in range(4)]
    for token in tokens[:3]:
        verifier.verify(token)
    verifier.verify(tokens[0])  # now the most recently used
    verifier.verify(tokens[3])  # evicts tokens[1]
    assert verifier.cache_len == 3
    decode = CountingDecode(verifier)
    verifier.verify(tokens[0])
    verifier.verify(tokens[3])
    assert decode.calls == 0
    verifier.verify(tokens[1])
    assert decode.calls == 1


def test_large_tokens_are_verified_but_not_cached() -> None:
    verifier = make_verifier(cache_max_token_bytes=2048)
    verifier.verify(make_token(features=["f" * 10] * 200))
    assert verifier.cache_len == 0
    verifier.verify(make_token())
    assert verifier.cache_len == 1


def test_cache_is_bounded_by_estimated_bytes_too() -> None:
    features = [f"{n:02d}" for n in range(100)]
    heavy = [make_token(sub=f"lic_{i}", features=features) for i in range(6)]
    probe = make_verifier()
    probe.verify(heavy[0])
    one = probe.cache_bytes
    # A hundred tiny features cost far more than the token's length: the estimate counts at
    # least the token, each feature string and their frozenset (a floor computed here, not by
    # the estimator, so an estimator that skips or undercounts objects fails).
    floor = getsizeof(heavy[0]) + sum(map(getsizeof, features)) + getsizeof(frozenset(features))
    assert one >= floor > 2 * len(heavy[0])
    verifier = make_verifier(cache_max_bytes=one * 3)
    for token in heavy:
        verifier.verify(token)
        assert verifier.cache_bytes <= one * 3
    assert verifier.cache_len == 3
    verifier.clear_cache()
    assert verifier.cache_bytes == 0


def test_cache_size_zero_disables_the_cache() -> None:
    verifier = make_verifier(cache_size=0)
    decode = CountingDecode(verifier)
    token = make_token()
    verifier.verify(token)
    verifier.verify(token)
    assert decode.calls == 2 and verifier.cache_len == 0


def test_concurrent_verification_with_a_small_cache() -> None:
    verifier = make_verifier(cache_size=4)
    tokens = [make_token(sub=f"lic_{i}") for i in range(12)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(300):
                token = tokens[(n + offset) % len(tokens)]
                assert verifier.verify(token).sub == f"lic_{(n + offset) % len(tokens)}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert verifier.cache_len <= 4


# -- key sources and dependencies ---------------------------------------------------


def test_unknown_kid_asks_the_source_once_and_uses_what_it_finds() -> None:
    keys = MutableKeys(KEY)
    keys.extra[OTHER.kid] = OTHER.public_key
    verifier = make_verifier(keys)
    assert verifier.verify(make_token(OTHER)).kid == OTHER.kid
    assert keys.unknown_lookups == [OTHER.kid]


def test_tokens_signed_by_the_key_ring_verify() -> None:
    ring = KeyRing(lambda: [RingKey(KEY.kid, KEY.public_key, KEY)])
    claims = build_claims(
        issuer=ISSUER,
        license_id="lic_9",
        app_id=APP,
        seller_tier="free",
        plan=None,
        features=[],
        license_exp=NOW + 100,
        hw_bound=True,
        now=NOW,
    )
    verified = make_verifier(ring).verify(ring.sign(claims))
    assert (verified.sub, verified.exp, verified.plan, verified.features) == (
        "lic_9",
        NOW + 100,
        None,
        frozenset(),
    )


class DownDenylist(MemoryDenylist):
    def is_revoked(self, jti: str, sub: str, iat: int) -> bool:
        raise Unavailable(detail="denylist unreachable")


class DownKeys(MutableKeys):
    def current(self) -> PublicKeys:
        raise Unavailable(detail="no JWKS")


def test_dependency_outages_are_503_not_401() -> None:
    with pytest.raises(Unavailable) as err:
        make_verifier(denylist=DownDenylist()).verify(make_token())
    assert err.value.status_code == 503
    with pytest.raises(Unavailable):
        make_verifier(DownKeys(KEY)).verify(make_token())


@pytest.mark.parametrize("token", [None, b"a.b.c", 12345, ["a", "b"]])
def test_non_string_tokens_are_refused_not_crashing(token: Any) -> None:
    with pytest.raises(TokenRejected) as err:
        make_verifier().verify(token)
    assert err.value.check == Check.MALFORMED


def test_size_cap_comes_before_any_parsing() -> None:
    verifier = make_verifier(max_token_bytes=100)
    with pytest.raises(TokenRejected) as err:
        verifier.verify(make_token())
    assert err.value.check == Check.TOO_LARGE


# -- claims and logs -------------------------------------------------------------------


def test_claims_are_read_only_and_copy_to_json() -> None:
    claims = make_verifier().verify(make_token())
    assert isinstance(claims.raw, Mapping)
    with pytest.raises(TypeError):
        claims.raw["plan"] = "enterprise"  # type: ignore[index]
    copy = claims.to_dict()
    copy["features"].append("admin")
    assert "admin" not in claims["features"]
    assert json.loads(json.dumps(copy))["sub"] == "lic_1"
    assert claims.has_features("export", "reports") and not claims.has_features("admin")
    assert claims.has_any_feature("admin", "export")
    assert (claims.license_id, claims.app_id, claims.issuer, claims.iat) == (
        "lic_1",
        APP,
        ISSUER,
        NOW,
    )


def test_rejection_detail_goes_to_the_log_not_to_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = make_token(aud="app_other")
    with caplog.at_level(logging.INFO, logger="licensechain.verifier"):
        with pytest.raises(TokenRejected) as err:
            make_verifier().verify(token)
    assert "audience_mismatch" in caplog.text and "app_other" in caplog.text
    assert token not in caplog.text
    assert "app_other" not in json.dumps(err.value.body("r"))
