"""What the in-app gate refuses, and how: 401 with the reason class, 403, 503.

Every refusal is checked down to its status, its ``WWW-Authenticate`` challenge and its
contract body (``gate_support.assert_refused``); every hostile vector of
``tests/vectors/`` is a 401 through the gate, never a 500.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from conftest import free_port
from flask import Flask
from flask.testing import FlaskClient
from gate_support import (
    APP_ID,
    DROP,
    INSUFFICIENT_SCOPE,
    INVALID_TOKEN,
    ISSUER,
    JWKSServer,
    TokenFactory,
    add_gated_routes,
    assert_refused,
    bearer,
    fresh_case,
    integrator_app,
    raw_get,
    token_factory,
    vector_app,
)
from vectors import load_cases, load_controls

from flask_licensechain import LicenseChain, get_state
from flask_licensechain.core.gate import FEATURE_MISSING_MESSAGE
from flask_licensechain.core.keys import SigningKey

_DROP_CLAIM = DROP
_NOW = int(time.time())  # collection time; the cases' margins are minutes wide

HOSTILE_NAMES = [c.name for c in load_cases()]
CONTROL_NAMES = [c.name for c in load_controls()]


def test_expired_token_is_invalid_token(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    now = int(time.time())
    token = make_gate_token(iat=now - 4000, nbf=now - 4000, exp=now - 3000)
    assert_refused(
        gate_client.get("/reports/export", headers=bearer(token)),
        401,
        INVALID_TOKEN,
        "unauthorized",
    )


def test_other_app_token_is_invalid_token(jwks_server: JWKSServer, gate_key: SigningKey) -> None:
    client = integrator_app(jwks_server).test_client()
    token = token_factory(gate_key, ISSUER, "another_app")()
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )


def test_stranger_signed_token_is_invalid_token(
    gate_client: FlaskClient, make_gate_token: TokenFactory, stranger_key: SigningKey
) -> None:
    token = make_gate_token(signer=stranger_key)
    assert_refused(
        gate_client.get("/reports/export", headers=bearer(token)),
        401,
        INVALID_TOKEN,
        "unauthorized",
    )


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda make, key: make(exp=_NOW - 3000, iat=_NOW - 4000, nbf=_NOW - 4000), "expired"),
        (lambda make, key: make(nbf=_NOW + 600), "not_yet_valid"),
        (lambda make, key: make()[:-4] + "AAAA", "bad_signature"),
        (lambda make, key: make(signer=key, headers={"kid": "somebody-else"}), "unknown_key"),
        (lambda make, key: make(aud="another_app"), "wrong_audience"),
        (lambda make, key: make(iss=ISSUER + ".evil"), "wrong_issuer"),
        (lambda make, key: make(token_use="id_token"), "wrong_token_use"),
        (lambda make, key: "a.b.c", "malformed"),
        (lambda make, key: make(sub=_DROP_CLAIM), "malformed"),
    ],
    ids=[
        "expired", "not_yet_valid", "bad_signature", "unknown_key", "wrong_audience",
        "wrong_issuer", "wrong_token_use", "malformed", "missing_claim",
    ],
)  # fmt: skip
def test_every_401_says_why_and_nothing_more(
    gate_client: FlaskClient,
    make_gate_token: TokenFactory,
    stranger_key: SigningKey,
    build: Any,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = build(make_gate_token, stranger_key)
    with caplog.at_level("INFO", logger="licensechain"):
        response = gate_client.get("/reports/export", headers=bearer(token))
    assert_refused(response, 401, INVALID_TOKEN, "unauthorized", reason=why)
    assert response.headers["WWW-Authenticate"].endswith(f'error_description="{why}"')
    text = response.get_data(as_text=True)
    for secret in (token, token.split(".")[0], "Traceback", "kid", "RS256", "jwks"):
        assert len(secret) < 5 or secret not in text
    # The detail is for operators: the gate's log line names the class and the finer check.
    gate_lines = [r.getMessage() for r in caplog.records if r.name == "licensechain.gate"]
    assert any(f"class={why}" in line for line in gate_lines), gate_lines


def test_a_revoked_token_says_revoked(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    app = integrator_app(jwks_server)
    token = make_gate_token()
    get_state(app).denylist.revoke_jti(
        jwt.decode(token, options={"verify_signature": False})["jti"], 60
    )
    response = app.test_client().get("/reports/export", headers=bearer(token))
    assert_refused(response, 401, INVALID_TOKEN, "unauthorized", reason="revoked")


def test_the_403_for_a_missing_feature_says_so_in_one_wording(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    response = gate_client.get("/reports/export", headers=bearer(make_gate_token(features=())))
    assert response.get_json()["message"] == FEATURE_MISSING_MESSAGE


def test_missing_feature_is_403(gate_client: FlaskClient, make_gate_token: TokenFactory) -> None:
    token = make_gate_token(features=("audit",))
    response = gate_client.get("/reports/export", headers=bearer(token))
    assert_refused(response, 403, INSUFFICIENT_SCOPE, "insufficient_scope")


def test_all_features_are_required(gate_client: FlaskClient, make_gate_token: TokenFactory) -> None:
    assert_refused(
        gate_client.get("/all", headers=bearer(make_gate_token(features=("export",)))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    ok = gate_client.get("/all", headers=bearer(make_gate_token(features=("export", "audit"))))
    assert ok.status_code == 200


def test_any_feature_is_enough(gate_client: FlaskClient, make_gate_token: TokenFactory) -> None:
    assert (
        gate_client.get("/any", headers=bearer(make_gate_token(features=("export",)))).status_code
        == 200
    )
    assert (
        gate_client.get("/any", headers=bearer(make_gate_token(features=("audit",)))).status_code
        == 200
    )
    assert_refused(
        gate_client.get("/any", headers=bearer(make_gate_token(features=("sso",)))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert_refused(
        gate_client.get("/any-async", headers=bearer(make_gate_token(features=("export",)))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert (
        gate_client.get(
            "/any-async", headers=bearer(make_gate_token(features=("sso",)))
        ).status_code
        == 200
    )


def test_empty_feature_list_gets_403_not_401(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    response = gate_client.get("/reports/export", headers=bearer(make_gate_token(features=())))
    assert_refused(response, 403, INSUFFICIENT_SCOPE, "insufficient_scope")
    assert (
        gate_client.get("/licensed", headers=bearer(make_gate_token(features=()))).status_code
        == 200
    )


def test_plan_requirement(gate_client: FlaskClient, make_gate_token: TokenFactory) -> None:
    assert_refused(
        gate_client.get("/enterprise", headers=bearer(make_gate_token(plan="pro"))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert (
        gate_client.get(
            "/enterprise", headers=bearer(make_gate_token(plan="enterprise"))
        ).status_code
        == 200
    )
    assert_refused(
        gate_client.get("/enterprise", headers=bearer(make_gate_token(plan=None))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )


def test_plan_set_and_features_together(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    for plan in ("pro", "enterprise"):
        response = gate_client.get("/paid-export", headers=bearer(make_gate_token(plan=plan)))
        assert response.status_code == 200
    assert_refused(
        gate_client.get("/paid-export", headers=bearer(make_gate_token(plan="free"))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert_refused(
        gate_client.get("/paid-export", headers=bearer(make_gate_token(plan="pro", features=()))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )


def test_invalid_token_wins_over_missing_feature(
    gate_client: FlaskClient, make_gate_token: TokenFactory
) -> None:
    now = int(time.time())
    token = make_gate_token(features=(), iat=now - 4000, nbf=now - 4000, exp=now - 3000)
    assert gate_client.get("/reports/export", headers=bearer(token)).status_code == 401


def test_revoked_jti_is_refused_at_once(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    app = integrator_app(jwks_server)
    client = app.test_client()
    token, other = make_gate_token(sub="lic_r"), make_gate_token(sub="lic_r")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200  # now warm
    get_state(app).denylist.revoke_jti(
        jwt.decode(token, options={"verify_signature": False})["jti"], 60
    )
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    assert client.get("/reports/export", headers=bearer(other)).status_code == 200


def test_revoked_sub_refuses_every_token_of_the_license(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    app = integrator_app(jwks_server)
    client = app.test_client()
    first, second = make_gate_token(sub="lic_s"), make_gate_token(sub="lic_s")
    unrelated = make_gate_token(sub="lic_other")
    assert client.get("/reports/export", headers=bearer(first)).status_code == 200
    state = get_state(app)
    state.denylist.revoke_sub("lic_s", 60)
    for token in (first, second):
        assert_refused(
            client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
        )
    assert client.get("/reports/export", headers=bearer(unrelated)).status_code == 200
    state.denylist.unrevoke_sub("lic_s")
    assert client.get("/reports/export", headers=bearer(first)).status_code == 200


@pytest.mark.redis
def test_revocation_through_shared_redis_reaches_the_gate(
    jwks_server: JWKSServer, make_gate_token: TokenFactory, redis_url: str
) -> None:
    from flask_licensechain.core.denylist.redis import RedisDenylist

    app = integrator_app(jwks_server, LICENSECHAIN_DENYLIST_URL=redis_url)
    client = app.test_client()
    sub = "lic_redis_" + jwt.utils.base64url_encode(time.time_ns().to_bytes(8, "big")).decode()
    token = make_gate_token(sub=sub)
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    # Another process (the issuer) revokes through Redis; the gate must notice promptly.
    issuer_side = RedisDenylist.from_uri(redis_url)
    try:
        issuer_side.revoke_sub(sub, 30)
        deadline = time.monotonic() + 5
        status = 200
        while status == 200 and time.monotonic() < deadline:
            status = client.get("/reports/export", headers=bearer(token)).status_code
            if status == 200:
                time.sleep(0.02)
        assert status == 401
        issuer_side.unrevoke_sub(sub)
    finally:
        issuer_side.close()
        get_state(app).denylist.close()


def test_unreachable_denylist_fails_closed_with_503(
    jwks_server: JWKSServer, make_gate_token: TokenFactory
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = integrator_app(jwks_server, LICENSECHAIN_DENYLIST_URL=dead_redis)
    try:
        response = app.test_client().get("/reports/export", headers=bearer(make_gate_token()))
        assert_refused(response, 503, None, "unavailable")
    finally:
        get_state(app).denylist.close()


def test_unreachable_jwks_before_the_first_fetch_is_503(make_gate_token: TokenFactory) -> None:
    app = Flask(__name__)
    app.config.update(
        LICENSECHAIN_JWKS_URL=f"http://127.0.0.1:{free_port()}/v1/licenses/jwks",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_AUDIENCE=APP_ID,
    )
    LicenseChain(app)
    add_gated_routes(app)
    response = app.test_client().get("/reports/export", headers=bearer(make_gate_token()))
    assert_refused(response, 503, None, "unavailable")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_vector_is_401_through_the_gate(name: str, tmp_path: Any) -> None:
    case = fresh_case(name, "cases")
    app = vector_app(case, tmp_path)
    for path in ("/reports/export", "/licensed-async"):
        response = raw_get(app, path, "Bearer " + case.token)
        assert_refused(response, 401, INVALID_TOKEN, "unauthorized")
        assert case.name not in response.get_data(as_text=True)


@pytest.mark.parametrize("name", CONTROL_NAMES)
def test_vector_controls_pass_the_gate(name: str, tmp_path: Any) -> None:
    case = fresh_case(name, "controls")
    # Proves the hostile cases are refused for their flaw, not for a broken setup.
    response = raw_get(vector_app(case, tmp_path), "/licensed", "Bearer " + case.token)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["sub"] == case.claims["sub"]


def test_control_vector_list_is_not_empty() -> None:
    # An empty list would let the parametrised control test above pass by running nothing.
    assert {"valid_default", "valid_aud_list_with_expected", "valid_with_license_exp"} <= set(
        CONTROL_NAMES
    )
