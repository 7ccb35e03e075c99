"""The verifier at its edges: RFC 7519 claim types, RFC 7515 segments, exact boundaries, the cache.

Each test here pins one rule a small change to ``core/verifier.py`` could break unnoticed
(``mutation/README.md`` lists what was measured).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from sys import getsizeof
from types import MappingProxyType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from test_verifier import APP, KEY, NOW, Clock, MutableKeys, make_token, make_verifier

from flask_licensechain.core.contract import MAX_KID_LENGTH, build_claims
from flask_licensechain.core.denylist import MemoryDenylist
from flask_licensechain.core.verifier import Check, LicenseClaims, TokenRejected, TokenVerifier


def refused(verifier: TokenVerifier, token: Any) -> TokenRejected:
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token)
    assert err.value.status_code == 401
    return err.value


def signed(payload: dict[str, Any], kid: str = KEY.kid) -> str:
    return jwt.encode(payload, KEY.private_key, algorithm="RS256", headers={"kid": kid})


def claims_of(**changes: Any) -> dict[str, Any]:
    body = build_claims(
        issuer="https://issuer.test",
        license_id="lic_1",
        app_id=APP,
        seller_tier="pro",
        plan="pro",
        features=["export"],
        license_exp=None,
        hw_bound=False,
        now=NOW,
    )
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _ABSENT}


_ABSENT = object()


# -- RFC 7519 section 2 NumericDate: exp, iat and nbf are integers ----------------------------


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    [NOW + 0.5, float(NOW), True, False, str(NOW), None, [NOW], {"t": NOW}],
    ids=["float", "integral_float", "true", "false", "string", "null", "list", "object"],
)
def test_numericdate_claim_of_another_json_type_is_refused(claim: str, value: Any) -> None:
    base = claims_of()
    if claim == "exp":
        base["exp"] = value + 3600 if type(value) is float else value
    else:
        base[claim] = value
    err = refused(make_verifier(), signed(base))
    assert err.check == Check.BAD_CLAIM  # not a TypeError from comparing a str with an int


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "jti"])
def test_required_registered_claim_missing_is_refused(claim: str) -> None:
    err = refused(make_verifier(), signed(claims_of(**{claim: _ABSENT})))
    assert err.check == Check.MISSING_CLAIM
    assert claim in str(err.detail)


def test_nbf_is_optional() -> None:
    assert make_verifier().verify(signed(claims_of(nbf=_ABSENT))).sub == "lic_1"


@pytest.mark.parametrize(
    "changes",
    [{"sub": ""}, {"jti": ""}, {"sub": 7}, {"jti": None}, {"sub": ["lic_1"]}, {"jti": 1}],
    ids=["empty_sub", "empty_jti", "int_sub", "null_jti", "list_sub", "int_jti"],
)
def test_sub_and_jti_must_be_non_empty_strings(changes: dict[str, Any]) -> None:
    err = refused(make_verifier(), signed(claims_of(**changes)))
    assert err.check == Check.BAD_CLAIM


# -- private claims: plan, features, aud ---------------------------------------------------


@pytest.mark.parametrize("plan", [["gold"], 7, True, {"name": "gold"}])
def test_plan_that_is_not_a_string_is_refused(plan: Any) -> None:
    err = refused(make_verifier(), signed(claims_of(plan=plan)))
    assert err.check == Check.BAD_CLAIM


def test_plan_and_features_are_exposed_as_signed() -> None:
    claims = make_verifier().verify(signed(claims_of(plan="gold", features=["a", "b"])))
    assert claims.plan == "gold"
    assert claims.features == frozenset({"a", "b"})


def test_token_without_features_has_none() -> None:
    claims = make_verifier().verify(signed(claims_of(features=_ABSENT)))
    assert claims.features == frozenset()
    assert not claims.has_any_feature("export")


@pytest.mark.parametrize("features", ["export", [1], [["export"]], {"export": True}, None])
def test_features_that_are_not_a_list_of_strings_are_refused(features: Any) -> None:
    err = refused(make_verifier(), signed(claims_of(features=features)))
    assert err.check == Check.BAD_CLAIM


@pytest.mark.parametrize("aud", [7, [APP, 7], {"aud": APP}, True])
def test_aud_that_is_not_a_string_or_list_of_strings_is_refused(aud: Any) -> None:
    err = refused(make_verifier(audience=None), signed(claims_of(aud=aud)))
    assert err.check == Check.BAD_CLAIM


def test_aud_absent_when_no_audience_is_configured() -> None:
    claims = make_verifier(audience=None).verify(signed(claims_of(aud=_ABSENT)))
    assert claims.aud == () and claims.app_id is None


def test_claims_lookup_by_name() -> None:
    claims = make_verifier().verify(signed(claims_of(lc_vt="advanced")))
    assert claims.get("lc_vt") == "advanced"
    assert claims.get("absent") is None
    assert claims.get("absent", 5) == 5
    assert claims["sub"] == "lic_1"


# -- RFC 7515 compact serialisation: segments --------------------------------------------------


def test_truncated_signature_segment_of_impossible_length_is_malformed() -> None:
    head, payload, _ = make_token().split(".")
    # 5 base64url characters cannot encode whole bytes: refused as malformed, never a
    # binascii.Error escaping as a 500.
    err = refused(make_verifier(), f"{head}.{payload}.AAAAA")
    assert err.check == Check.MALFORMED


def test_non_canonical_base64url_signature_is_malformed() -> None:
    head, payload, signature = make_token().split(".")
    # 'B' as the last of 2 characters leaves non-zero unused bits: decodes, but not canonical.
    err = refused(make_verifier(), f"{head}.{payload}.AB")
    assert err.check == Check.MALFORMED
    padded = signature + "=" * (-len(signature) % 4)
    assert padded != signature  # (a 256-byte RSA signature always needs padding)
    err = refused(make_verifier(), f"{head}.{payload}.{padded}")
    assert err.check == Check.MALFORMED


def test_signature_whose_base64url_ends_in_x_verifies() -> None:
    # The canonical-encoding check strips only '=' padding: 'X' is an ordinary character. A
    # 2048-bit signature's last character is one of A, Q, g, w; a 3072-bit one (384 bytes,
    # no padding) can end in any character.
    big = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    keys = MutableKeys()
    keys.keys = MappingProxyType({"k3072": big.public_key()})
    for n in range(2000):
        token = jwt.encode(claims_of(jti=f"jti-{n}"), big, "RS256", headers={"kid": "k3072"})
        if token.endswith("X"):
            break
    else:  # pragma: no cover - one signature in 64 ends in X
        pytest.fail("no signature ending in X")
    assert make_verifier(keys).verify(token).jti == f"jti-{n}"


@pytest.mark.parametrize("where", ["header", "payload"])
def test_segment_that_is_json_but_not_an_object_is_malformed(where: str) -> None:
    def b64(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    head, payload, signature = make_token().split(".")
    if where == "header":
        token = f"{b64(['RS256'])}.{payload}.{signature}"
        err = refused(make_verifier(), token)
    else:
        signing_input = f"{head}.{b64([1, 2])}".encode()
        sig = KEY.private_key.sign(signing_input, *_pkcs1_sha256())
        token = f"{signing_input.decode()}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
        err = refused(make_verifier(), token)
    assert err.check == Check.MALFORMED
    assert where in str(err.detail)


def _pkcs1_sha256() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PKCS1v15(), hashes.SHA256()


# -- exact boundaries --------------------------------------------------------------------------


def test_token_of_exactly_max_token_bytes_is_accepted() -> None:
    token = make_token()
    assert make_verifier(max_token_bytes=len(token)).verify(token).sub == "lic_1"
    err = refused(make_verifier(max_token_bytes=len(token) - 1), token)
    assert err.check == Check.TOO_LARGE


def test_max_token_bytes_zero_refuses_every_token_as_too_large() -> None:
    err = refused(make_verifier(max_token_bytes=0), "a")
    assert err.check == Check.TOO_LARGE


def test_kid_of_exactly_max_kid_length_is_accepted() -> None:
    assert MAX_KID_LENGTH == 128
    kid = "k" * 128
    keys = MutableKeys()
    keys.keys = MappingProxyType({kid: KEY.public_key, kid + "k": KEY.public_key})
    verifier = make_verifier(keys)
    assert verifier.verify(make_token(kid=kid)).kid == kid
    err = refused(verifier, make_token(kid=kid + "k"))
    assert err.check == Check.BAD_KID


def test_cached_token_passes_until_exp_and_is_expired_at_exp() -> None:
    clock = Clock()
    verifier = make_verifier(clock=clock, leeway=0)
    token = make_token()  # exp = NOW + 3600
    verifier.verify(token)
    clock.now = NOW + 3600 - 1
    assert verifier.verify(token).sub == "lic_1"
    assert verifier.cache_hits == 1
    clock.now = NOW + 3600
    err = refused(verifier, token)
    assert (err.check, err.reason) == (Check.EXPIRED, "token_expired")


def test_cached_token_keeps_the_leeway_after_exp() -> None:
    clock = Clock()
    verifier = make_verifier(clock=clock)  # leeway 30 s
    token = make_token()
    verifier.verify(token)
    clock.now = NOW + 3600 + 29
    assert verifier.verify(token).sub == "lic_1"
    assert verifier.cache_hits == 1  # answered from the cache, not re-verified
    clock.now = NOW + 3600 + 30
    assert refused(verifier, token).reason == "token_expired"
    assert (verifier.cache_len, verifier.cache_bytes) == (0, 0)


def test_token_of_exactly_cache_max_token_bytes_is_cached() -> None:
    token = make_token()
    verifier = make_verifier(cache_max_token_bytes=len(token))
    verifier.verify(token)
    assert verifier.cache_len == 1
    shorter = make_verifier(cache_max_token_bytes=len(token) - 1)
    shorter.verify(token)
    assert shorter.cache_len == 0


# -- the verified-token cache: what it hands out and what it counts -----------------------------


def test_cached_claims_are_immutable() -> None:
    verifier = make_verifier()
    token = make_token()
    claims = verifier.verify(token)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.features = frozenset({"admin"})  # type: ignore[misc]
    with pytest.raises(TypeError):
        claims.raw["features"] = ["admin"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        claims.features.add("admin")  # type: ignore[attr-defined]
    again = verifier.verify(token)
    assert again.features == frozenset({"export", "reports"})
    assert again["features"] == ["export", "reports"]


def test_cache_counts_hits_and_misses() -> None:
    verifier = make_verifier()
    assert (verifier.cache_hits, verifier.cache_misses, verifier.cache_bytes) == (0, 0, 0)
    token = make_token()
    verifier.verify(token)
    verifier.verify(token)
    verifier.verify(token)
    verifier.verify(make_token(sub="lic_2"))
    assert (verifier.cache_hits, verifier.cache_misses) == (2, 2)


def test_cache_byte_estimate_counts_the_token_and_every_claim_object() -> None:
    features = [f"{n:02d}" for n in range(100)]
    token = make_token(features=features)
    verifier = make_verifier()
    claims = verifier.verify(token).to_dict()
    # A lower bound computed independently of the estimator: the token, the frozenset of the
    # features, and every claim name and value (the features list's items too).
    floor = getsizeof(token) + getsizeof(frozenset(features))
    for name, value in claims.items():
        floor += getsizeof(name) + getsizeof(value)
        if isinstance(value, list):
            floor += sum(getsizeof(item) for item in value)
    assert verifier.cache_bytes >= floor


def test_cache_byte_bound_holds_for_nested_claims() -> None:
    blob = [[n] for n in range(300)]
    tokens = [make_token(sub=f"lic_{i}", blob=blob) for i in range(5)]
    assert all(len(t) <= 4096 for t in tokens)  # short enough to be cacheable by length
    verifier = make_verifier(cache_max_bytes=20_000)
    for token in tokens:
        assert verifier.verify(token).sub.startswith("lic_")
    # Each entry alone costs more than 20,000 bytes as Python objects: none may stay.
    assert (verifier.cache_len, verifier.cache_bytes) == (0, 0)


def test_cache_bytes_stay_the_sum_of_the_entries() -> None:
    clock = Clock()
    verifier = make_verifier(clock=clock, cache_size=2)
    tokens = [make_token(sub="lic_" + "x" * n) for n in (1, 50, 100)]  # three sizes
    for token in tokens:
        verifier.verify(token)
    assert verifier.cache_len == 2
    two = verifier.cache_bytes
    assert two > 0
    # Storing an entry again replaces it: counted once.
    entry = verifier._cache[tokens[2]]
    verifier._remember(tokens[2], entry)
    assert verifier.cache_bytes == two
    verifier._forget("never-cached")  # forgetting an absent token is harmless
    assert verifier.cache_bytes == two
    clock.now = NOW + 3600 + 30  # both expire: each is forgotten on its next presentation
    for token in tokens[1:]:
        refused(verifier, token)
    assert (verifier.cache_len, verifier.cache_bytes) == (0, 0)


def test_entry_whose_key_left_the_set_is_forgotten() -> None:
    keys = MutableKeys(KEY)
    verifier = make_verifier(keys)
    token = make_token()
    verifier.verify(token)
    keys.keys = MappingProxyType({})
    assert refused(verifier, token).check == Check.UNKNOWN_KID
    assert (verifier.cache_len, verifier.cache_bytes) == (0, 0)


# -- what a rejection carries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_of", "check", "needle"),
    [
        (lambda: make_token(aud="app_other"), Check.AUDIENCE_MISMATCH, "app_other"),
        (lambda: make_token(iss="https://evil.test"), Check.ISSUER_MISMATCH, "evil.test"),
        (lambda: make_token(token_use="id"), Check.WRONG_TOKEN_USE, "'id'"),
        (lambda: make_token(kid="kid-nobody-knows"), Check.UNKNOWN_KID, "kid-nobody-knows"),
        (lambda: make_token(now=NOW - 7200), Check.EXPIRED, str(NOW - 7200 + 3600)),
        (lambda: make_token(now=NOW + 600), Check.NOT_YET_VALID, str(NOW + 600)),
        (lambda: make_token(nbf=NOW + 600), Check.NOT_YET_VALID, str(NOW + 600)),
        (lambda: 12345, Check.MALFORMED, "int"),
        (lambda: "a.b", Check.MALFORMED, "compact"),
    ],
    ids=["aud", "iss", "token_use", "kid", "exp", "iat", "nbf", "type", "shape"],
)
def test_rejection_detail_names_what_failed_for_the_log(
    token_of: Any, check: str, needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="licensechain.verifier"):
        err = refused(make_verifier(), token_of())
    assert err.check == check
    assert isinstance(err.detail, str) and needle in err.detail
    assert check in caplog.text and needle in caplog.text
    assert needle not in json.dumps(err.body("r"))  # the client sees the generic text only


def test_revoked_rejection_names_jti_and_sub_for_the_log() -> None:
    denylist = MemoryDenylist(clock=lambda: NOW)
    denylist.revoke_sub("lic_1", 60)
    err = refused(make_verifier(denylist=denylist), make_token())
    assert (err.check, err.reason) == (Check.REVOKED, "token_revoked")
    assert "lic_1" in str(err.detail)


def test_license_claims_are_a_frozen_dataclass() -> None:
    # The cache hands the same object to every request: no field may be rebound.
    assert dataclasses.fields(LicenseClaims)
    params = LicenseClaims.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen


def test_per_call_audience_set_needs_one_of_its_apps_in_aud() -> None:
    verifier = make_verifier(audience=None)
    token = make_token()  # aud = APP
    for _ in range(2):  # cold, then from the cache
        assert verifier.verify(token, audience=frozenset({"app_other", APP})).sub == "lic_1"
        assert verifier.verify(token, audience=APP).sub == "lic_1"
        for audience in (frozenset({"app_other"}), frozenset(), "app_other", APP + "x"):
            err = refused_with(verifier, token, audience)
            assert err.check == Check.AUDIENCE_MISMATCH


def refused_with(verifier: TokenVerifier, token: str, audience: Any) -> TokenRejected:
    with pytest.raises(TokenRejected) as err:
        verifier.verify(token, audience=audience)
    return err.value
