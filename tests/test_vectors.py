"""Every hostile vector in tests/vectors/ is refused with its expected reason; controls pass."""

from __future__ import annotations

import time

import pytest
import vectors
from vectors import Case, load_cases, load_controls

from flask_licensechain.core.errors import InvalidToken
from flask_licensechain.core.verifier import Check, TokenRejected

CASES = load_cases()
CONTROLS = load_controls()
KNOWN_CHECKS = {v for k, v in vars(Check).items() if k.isupper()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_vector_is_refused_with_its_reason(case: Case) -> None:
    verifier = case.verifier()
    with pytest.raises(InvalidToken) as err:
        verifier.verify(case.token)
    assert isinstance(err.value, TokenRejected)
    assert (err.value.reason, err.value.check) == (case.expect_reason, case.expect_check)
    # 401 with the generic description: the detail never reaches a client.
    assert err.value.status_code == 401
    body = err.value.body("req-1")
    assert body == {
        "error": "unauthorized",
        "message": "The license token is invalid, expired or revoked.",
        "request_id": "req-1",
    }
    assert 'error="invalid_token"' in err.value.headers()["WWW-Authenticate"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_vector_is_refused_again_from_a_warm_verifier(case: Case) -> None:
    # A cache full of good tokens must not change any answer.
    verifier = case.verifier()
    for control in CONTROLS:
        verifier.verify(control.token)
    for _ in range(2):
        with pytest.raises(TokenRejected) as err:
            verifier.verify(case.token)
        assert err.value.check == case.expect_check


@pytest.mark.parametrize("case", CONTROLS, ids=[c.name for c in CONTROLS])
def test_control_vector_verifies(case: Case) -> None:
    claims = case.verifier().verify(case.token)
    assert claims.jti == case.claims["jti"]
    assert claims.sub == case.claims["sub"]


def test_vectors_cover_every_check_and_the_issue_list() -> None:
    checks = {c.expect_check for c in CASES}
    assert checks == KNOWN_CHECKS
    assert {c.expect_reason for c in CASES} == {"token_invalid", "token_expired", "token_revoked"}
    names = {c.name for c in CASES}
    for required in (
        "alg_none",
        "hs256_with_issuer_spki_pem",
        "rs256_by_stranger_under_issuer_kid",
        "kid_unknown",
        "kid_huge",
        "kid_path_traversal",
        "jku_points_to_attacker",
        "x5u_points_to_attacker",
        "jwk_embedded_with_issuer_kid",
        "x5c_stranger_cert_with_issuer_kid",
        "crit_unknown_extension",
        "token_use_missing",
        "token_use_other_version",
        "aud_wrong",
        "aud_missing_when_expected",
        "iss_prefix_of_expected",
        "iss_suffix_of_expected",
        "exp_missing",
        "exp_numeric_string",
        "exp_long_past",
        "nbf_in_future",
        "iat_in_future",
        "oversized_signed",
        "truncated_signature",
        "standard_base64_plus",
        "payload_json_array",
        "signature_from_another_token",
        "revoked_jti",
        "revoked_sub",
    ):
        assert required in names


def test_tokens_are_built_for_the_time_they_are_used() -> None:
    case = next(c for c in load_cases() if c.name == "iat_in_future")
    assert case.claims["iat"] >= int(time.time()) + 119
    fixed = next(c for c in load_cases(now=1_700_000_000) if c.name == "iat_in_future")
    assert fixed.claims["iat"] == 1_700_000_120


def test_control_vectors_are_present() -> None:
    # An empty list would let test_control_vector_verifies pass by running nothing.
    assert {c.name for c in CONTROLS} >= {
        "valid_default",
        "valid_jku_is_ignored",
        "valid_aud_list_with_expected",
        "valid_exp_within_leeway",
        "valid_nbf_within_leeway",
        "valid_without_nbf",
        "valid_with_license_exp",
    }


def test_every_case_documents_its_origin() -> None:
    for case in CASES + CONTROLS:
        assert case.description and case.origin, case.name


def test_tokens_are_reproducible_for_a_fixed_now() -> None:
    # PKCS#1 v1.5 signatures are deterministic: same recipe and clock, same bytes.
    first = {c.name: c.token for c in load_cases(now=1_700_000_000)}
    vectors._build.cache_clear()  # sign again rather than reuse the built tokens
    again = {c.name: c.token for c in load_cases(now=1_700_000_000)}
    later = {c.name: c.token for c in load_cases(now=1_700_000_001)}
    randomised = {"ps256_by_issuer"}  # PSS salts are random
    assert {n for n in first if first[n] != again[n]} == randomised
    assert first["alg_none"] != later["alg_none"]
