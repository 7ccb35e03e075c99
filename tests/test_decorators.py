"""The Flask gate: @requires_feature / @requires_any_feature / @requires_license.

Integrator mode runs against a real JWKS server on loopback; issuer mode against the
extension's own store and key ring. Every failure is checked down to its status, its
``WWW-Authenticate`` challenge and its contract body.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from conftest import free_port
from flask import Flask, jsonify
from flask.testing import FlaskClient
from vectors import load_cases, load_controls

from flask_licensechain import (
    LicenseChain,
    current_license,
    get_current_license,
    get_state,
    requires_any_feature,
    requires_feature,
    requires_license,
)
from flask_licensechain.core.contract import build_claims
from flask_licensechain.core.keys import SigningKey

ISSUER = "https://licenses.example.test"
APP_ID = "app_integrator_1"
CHALLENGE = 'Bearer realm="licensechain"'
INVALID_TOKEN = 'Bearer realm="licensechain", error="invalid_token"'
INSUFFICIENT_SCOPE = 'Bearer realm="licensechain", error="insufficient_scope"'


# -- keys, tokens and a real JWKS server ------------------------------------------


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="session")
def stranger_key() -> SigningKey:
    return SigningKey.generate()


class _JWKSServer:
    """A loopback HTTP server answering the JWKS and (optionally) introspect."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.introspect_answer: tuple[int, Any] = (200, {"active": True, "status": "ACTIVE"})
        self.introspect_calls: list[dict[str, Any]] = []
        self.port = free_port()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/v1/licenses/jwks":
                    self._send(404, {"error": "not_found"})
                else:
                    self._send(200, outer.jwks)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.introspect_calls.append(json.loads(self.rfile.read(length)))
                self._send(*outer.introspect_answer)

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/licenses"

    def __enter__(self) -> _JWKSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def jwks_server(signing_key: SigningKey) -> Iterator[_JWKSServer]:
    with _JWKSServer({"keys": [signing_key.jwk()]}) as server:
        yield server


TokenFactory = Callable[..., str]


def _token_factory(key: SigningKey, issuer: str, app_id: str) -> TokenFactory:
    def make(
        *,
        features: tuple[str, ...] = ("export",),
        plan: str | None = "pro",
        sub: str = "lic_1",
        headers: dict[str, Any] | None = None,
        signer: SigningKey | None = None,
        **claim_overrides: Any,
    ) -> str:
        claims = build_claims(
            issuer=issuer,
            license_id=sub,
            app_id=app_id,
            seller_tier="pro",
            plan=plan,
            features=features,
            license_exp=None,
            hw_bound=False,
            now=int(time.time()),
        )
        claims.update(claim_overrides)
        claims = {k: v for k, v in claims.items() if v is not _DROP}
        signer = signer or key
        return jwt.encode(
            claims,
            signer.private_key,
            algorithm="RS256",
            headers={"kid": key.kid, **(headers or {})},
        )

    return make


_DROP: Any = object()


@pytest.fixture
def make_token(signing_key: SigningKey) -> TokenFactory:
    return _token_factory(signing_key, ISSUER, APP_ID)


# -- the protected app -----------------------------------------------------------------


def add_gated_routes(app: Flask) -> None:
    def describe() -> dict[str, Any]:
        lic = current_license
        return {
            "sub": lic.sub,
            "aud": list(lic.aud),
            "plan": lic.plan,
            "features": sorted(lic.features),
            "jti": lic.jti,
            "exp": lic.exp,
            "iss": lic["iss"],
            "token_use": lic.get("token_use"),
        }

    @app.get("/reports/export")
    @requires_feature("export")
    def export() -> Any:
        return jsonify(describe())

    @app.get("/reports/export-async")
    @requires_feature("export")
    async def export_async() -> Any:
        return jsonify(describe())

    @app.get("/all")
    @requires_feature("export", "audit")
    def all_of() -> Any:
        return jsonify(ok=True)

    @app.get("/any")
    @requires_any_feature("audit", "export")
    def any_of() -> Any:
        return jsonify(ok=True)

    @app.get("/any-async")
    @requires_any_feature("audit", "sso")
    async def any_of_async() -> Any:
        return jsonify(ok=True)

    @app.get("/licensed")
    @requires_license
    def licensed() -> Any:
        return jsonify(sub=current_license.sub)

    @app.get("/licensed-async")
    @requires_license
    async def licensed_async() -> Any:
        return jsonify(sub=current_license.sub)

    @app.get("/enterprise")
    @requires_license(plan="enterprise")
    def enterprise() -> Any:
        return jsonify(ok=True)

    @app.get("/paid-export")
    @requires_feature("export", plan={"pro", "enterprise"})
    def paid_export() -> Any:
        return jsonify(ok=True)

    @app.route("/preflight", methods=["GET", "OPTIONS"])
    @requires_feature("export")
    def preflight() -> Any:
        return jsonify(gated_view_ran=True, license=get_current_license() is not None)

    @app.get("/open")
    def open_route() -> Any:
        return jsonify(license=get_current_license() is not None)


def integrator_app(server: _JWKSServer, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        LICENSECHAIN_JWKS_URL=server.base + "/jwks",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_AUDIENCE=APP_ID,
        **config,
    )
    LicenseChain(app)
    add_gated_routes(app)
    return app


@pytest.fixture
def client(jwks_server: _JWKSServer) -> FlaskClient:
    return integrator_app(jwks_server).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(
    response: Any, status: int, challenge: str | None, code: str, *, request_id: str | None = None
) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers.get("WWW-Authenticate") == challenge
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if request_id is not None:
        assert body["request_id"] == request_id


# -- integrator mode: success ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/reports/export", "/reports/export-async"])
def test_valid_token_reaches_view_with_current_license(
    client: FlaskClient, make_token: TokenFactory, path: str
) -> None:
    token = make_token(features=("export", "audit"), plan="pro", sub="lic_42")
    claims = jwt.decode(token, options={"verify_signature": False})
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {
        "sub": "lic_42",
        "aud": [APP_ID],
        "plan": "pro",
        "features": ["audit", "export"],
        "jti": claims["jti"],
        "exp": claims["exp"],
        "iss": ISSUER,
        "token_use": "licensechain_license_v1",
    }


def test_warm_token_is_accepted_again(client: FlaskClient, make_token: TokenFactory) -> None:
    token = make_token()
    for _ in range(3):
        assert client.get("/reports/export", headers=bearer(token)).status_code == 200


def test_bearer_scheme_is_case_insensitive(client: FlaskClient, make_token: TokenFactory) -> None:
    response = client.get("/reports/export", headers={"Authorization": "bearer " + make_token()})
    assert response.status_code == 200


# -- 401 ---------------------------------------------------------------------------------


def test_missing_token_is_401_without_error_attribute(client: FlaskClient) -> None:
    response = client.get("/reports/export", headers={"X-Request-ID": "req-abc.123"})
    assert_refused(response, 401, CHALLENGE, "unauthorized", request_id="req-abc.123")


@pytest.mark.parametrize("path", ["/reports/export-async", "/licensed", "/licensed-async"])
def test_missing_token_refused_on_every_kind_of_view(client: FlaskClient, path: str) -> None:
    assert_refused(client.get(path), 401, CHALLENGE, "unauthorized")


def test_other_authorization_scheme_counts_as_missing(client: FlaskClient) -> None:
    response = client.get("/reports/export", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_refused(response, 401, CHALLENGE, "unauthorized")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer " + "x" * 9000],
)
def test_malformed_tokens_are_invalid_token(client: FlaskClient, authorization: str) -> None:
    response = client.get("/reports/export", headers={"Authorization": authorization})
    assert_refused(response, 401, INVALID_TOKEN, "unauthorized")


def test_expired_token_is_invalid_token(client: FlaskClient, make_token: TokenFactory) -> None:
    now = int(time.time())
    token = make_token(iat=now - 4000, nbf=now - 4000, exp=now - 3000)
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )


def test_other_app_token_is_invalid_token(
    jwks_server: _JWKSServer, signing_key: SigningKey
) -> None:
    client = integrator_app(jwks_server).test_client()
    token = _token_factory(signing_key, ISSUER, "another_app")()
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )


def test_stranger_signed_token_is_invalid_token(
    client: FlaskClient, make_token: TokenFactory, stranger_key: SigningKey
) -> None:
    token = make_token(signer=stranger_key)
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )


def test_error_body_does_not_leak_the_reason(client: FlaskClient, make_token: TokenFactory) -> None:
    now = int(time.time())
    expired = make_token(iat=now - 4000, nbf=now - 4000, exp=now - 3000)
    bad_sig = make_token()[:-4] + "AAAA"
    bodies = [
        client.get("/reports/export", headers=bearer(t)).get_json() for t in (expired, bad_sig)
    ]
    assert bodies[0]["message"] == bodies[1]["message"]
    assert "expired" not in json.dumps(bodies[0]).lower().replace("expired or revoked", "")


# -- 403 ---------------------------------------------------------------------------------


def test_missing_feature_is_403(client: FlaskClient, make_token: TokenFactory) -> None:
    token = make_token(features=("audit",))
    response = client.get("/reports/export", headers=bearer(token))
    assert_refused(response, 403, INSUFFICIENT_SCOPE, "insufficient_scope")


def test_all_features_are_required(client: FlaskClient, make_token: TokenFactory) -> None:
    assert_refused(
        client.get("/all", headers=bearer(make_token(features=("export",)))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    ok = client.get("/all", headers=bearer(make_token(features=("export", "audit"))))
    assert ok.status_code == 200


def test_any_feature_is_enough(client: FlaskClient, make_token: TokenFactory) -> None:
    assert client.get("/any", headers=bearer(make_token(features=("export",)))).status_code == 200
    assert client.get("/any", headers=bearer(make_token(features=("audit",)))).status_code == 200
    assert_refused(
        client.get("/any", headers=bearer(make_token(features=("sso",)))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert_refused(
        client.get("/any-async", headers=bearer(make_token(features=("export",)))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert (
        client.get("/any-async", headers=bearer(make_token(features=("sso",)))).status_code == 200
    )


def test_empty_feature_list_gets_403_not_401(client: FlaskClient, make_token: TokenFactory) -> None:
    response = client.get("/reports/export", headers=bearer(make_token(features=())))
    assert_refused(response, 403, INSUFFICIENT_SCOPE, "insufficient_scope")
    assert client.get("/licensed", headers=bearer(make_token(features=()))).status_code == 200


def test_plan_requirement(client: FlaskClient, make_token: TokenFactory) -> None:
    assert_refused(
        client.get("/enterprise", headers=bearer(make_token(plan="pro"))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert (
        client.get("/enterprise", headers=bearer(make_token(plan="enterprise"))).status_code == 200
    )
    assert_refused(
        client.get("/enterprise", headers=bearer(make_token(plan=None))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )


def test_plan_set_and_features_together(client: FlaskClient, make_token: TokenFactory) -> None:
    for plan in ("pro", "enterprise"):
        response = client.get("/paid-export", headers=bearer(make_token(plan=plan)))
        assert response.status_code == 200
    assert_refused(
        client.get("/paid-export", headers=bearer(make_token(plan="free"))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert_refused(
        client.get("/paid-export", headers=bearer(make_token(plan="pro", features=()))),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )


def test_invalid_token_wins_over_missing_feature(
    client: FlaskClient, make_token: TokenFactory
) -> None:
    now = int(time.time())
    token = make_token(features=(), iat=now - 4000, nbf=now - 4000, exp=now - 3000)
    assert client.get("/reports/export", headers=bearer(token)).status_code == 401


# -- token sources ----------------------------------------------------------------------


def test_x_license_token_and_cookie_are_off_by_default(
    client: FlaskClient, make_token: TokenFactory
) -> None:
    token = make_token()
    assert_refused(
        client.get("/reports/export", headers={"X-License-Token": token}),
        401,
        CHALLENGE,
        "unauthorized",
    )
    client.set_cookie("lc_token", token)
    assert_refused(client.get("/reports/export"), 401, CHALLENGE, "unauthorized")


def test_x_license_token_when_enabled(jwks_server: _JWKSServer, make_token: TokenFactory) -> None:
    client = integrator_app(jwks_server, LICENSECHAIN_TOKEN_X_HEADER=True).test_client()
    response = client.get("/reports/export", headers={"X-License-Token": make_token(sub="lic_x")})
    assert response.status_code == 200
    assert response.get_json()["sub"] == "lic_x"
    bad = client.get("/reports/export", headers={"X-License-Token": "garbage"})
    assert_refused(bad, 401, INVALID_TOKEN, "unauthorized")


def test_cookie_when_enabled(jwks_server: _JWKSServer, make_token: TokenFactory) -> None:
    client = integrator_app(jwks_server, LICENSECHAIN_TOKEN_COOKIE="lc_token").test_client()
    client.set_cookie("other_cookie", make_token())
    assert_refused(client.get("/reports/export"), 401, CHALLENGE, "unauthorized")
    client.set_cookie("lc_token", make_token(sub="lic_cookie"))
    response = client.get("/reports/export")
    assert response.status_code == 200
    assert response.get_json()["sub"] == "lic_cookie"


def test_bearer_header_can_be_turned_off(
    jwks_server: _JWKSServer, make_token: TokenFactory
) -> None:
    app = integrator_app(
        jwks_server, LICENSECHAIN_TOKEN_HEADER=False, LICENSECHAIN_TOKEN_X_HEADER=True
    )
    client = app.test_client()
    assert_refused(
        client.get("/reports/export", headers=bearer(make_token())), 401, CHALLENGE, "unauthorized"
    )
    assert (
        client.get("/reports/export", headers={"X-License-Token": make_token()}).status_code == 200
    )


def test_bearer_header_is_read_before_the_other_sources(
    jwks_server: _JWKSServer, make_token: TokenFactory
) -> None:
    client = integrator_app(jwks_server, LICENSECHAIN_TOKEN_X_HEADER=True).test_client()
    response = client.get(
        "/reports/export",
        headers={**bearer(make_token(sub="from_bearer")), "X-License-Token": "garbage"},
    )
    assert response.get_json()["sub"] == "from_bearer"


# -- CORS preflight and current_license outside the gate ---------------------------------------


def test_options_preflight_is_not_blocked(client: FlaskClient) -> None:
    preflight_headers = {
        "Origin": "https://app.example.test",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    explicit = client.options("/preflight", headers=preflight_headers)
    assert explicit.status_code == 200
    assert explicit.get_json() == {"gated_view_ran": True, "license": False}
    automatic = client.options("/reports/export", headers=preflight_headers)
    assert automatic.status_code == 200
    assert "GET" in automatic.headers["Allow"]
    # The same route still refuses a GET without a token.
    assert client.get("/preflight").status_code == 401


def test_current_license_outside_a_gated_view(
    client: FlaskClient, make_token: TokenFactory
) -> None:
    response = client.get("/open", headers=bearer(make_token()))
    assert response.get_json() == {"license": False}
    assert get_current_license() is None
    with pytest.raises(RuntimeError, match="only set inside a view protected"):
        _ = current_license.sub


# -- revocation (instant, via the denylist) and fail-closed ---------------------------------------


def test_revoked_jti_is_refused_at_once(jwks_server: _JWKSServer, make_token: TokenFactory) -> None:
    app = integrator_app(jwks_server)
    client = app.test_client()
    token, other = make_token(sub="lic_r"), make_token(sub="lic_r")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200  # now warm
    get_state(app).denylist.revoke_jti(
        jwt.decode(token, options={"verify_signature": False})["jti"], 60
    )
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    assert client.get("/reports/export", headers=bearer(other)).status_code == 200


def test_revoked_sub_refuses_every_token_of_the_license(
    jwks_server: _JWKSServer, make_token: TokenFactory
) -> None:
    app = integrator_app(jwks_server)
    client = app.test_client()
    first, second = make_token(sub="lic_s"), make_token(sub="lic_s")
    unrelated = make_token(sub="lic_other")
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
    jwks_server: _JWKSServer, make_token: TokenFactory, redis_url: str
) -> None:
    from flask_licensechain.core.denylist.redis import RedisDenylist

    app = integrator_app(jwks_server, LICENSECHAIN_DENYLIST_URL=redis_url)
    client = app.test_client()
    sub = "lic_redis_" + jwt.utils.base64url_encode(time.time_ns().to_bytes(8, "big")).decode()
    token = make_token(sub=sub)
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
    jwks_server: _JWKSServer, make_token: TokenFactory
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = integrator_app(jwks_server, LICENSECHAIN_DENYLIST_URL=dead_redis)
    try:
        response = app.test_client().get("/reports/export", headers=bearer(make_token()))
        assert_refused(response, 503, None, "unavailable")
    finally:
        get_state(app).denylist.close()


def test_unreachable_jwks_before_the_first_fetch_is_503(make_token: TokenFactory) -> None:
    app = Flask(__name__)
    app.config.update(
        LICENSECHAIN_JWKS_URL=f"http://127.0.0.1:{free_port()}/v1/licenses/jwks",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_AUDIENCE=APP_ID,
    )
    LicenseChain(app)
    add_gated_routes(app)
    response = app.test_client().get("/reports/export", headers=bearer(make_token()))
    assert_refused(response, 503, None, "unavailable")


# -- server-authoritative mode, integrator side (introspect) ------------------------------------


def test_authoritative_mode_asks_introspect_and_caches(
    jwks_server: _JWKSServer, make_token: TokenFactory
) -> None:
    client = integrator_app(
        jwks_server, LICENSECHAIN_AUTHORITATIVE=True, LICENSECHAIN_AUTHORITATIVE_CACHE_TTL=60
    ).test_client()
    token = make_token()
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    jwks_server.introspect_answer = (200, {"active": True, "jti": jti, "status": "ACTIVE"})
    for _ in range(3):
        assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    assert jwks_server.introspect_calls == [{"license_token": token}]  # one call, then cached


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ((200, {"active": False, "reason": "license_suspended"}), 401),
        ((200, {"active": False, "reason": "token_revoked"}), 401),
        ((200, {"active": True, "status": "SUSPENDED"}), 401),
        ((500, {"error": "internal_error"}), 503),
        ((200, ["not", "an", "object"]), 503),
        ((429, {"error": "rate_limited"}), 503),
    ],
)
def test_authoritative_mode_refuses_dead_licenses_and_fails_closed(
    jwks_server: _JWKSServer, make_token: TokenFactory, answer: tuple[int, Any], status: int
) -> None:
    client = integrator_app(jwks_server, LICENSECHAIN_AUTHORITATIVE=True).test_client()
    jwks_server.introspect_answer = answer
    response = client.get("/reports/export", headers=bearer(make_token()))
    if status == 401:
        assert_refused(response, 401, INVALID_TOKEN, "unauthorized")
    else:
        assert_refused(response, 503, None, "unavailable")


def test_authoritative_mode_with_introspect_down_is_503(
    jwks_server: _JWKSServer, make_token: TokenFactory
) -> None:
    client = integrator_app(
        jwks_server,
        LICENSECHAIN_AUTHORITATIVE=True,
        LICENSECHAIN_INTROSPECT_URL=f"http://127.0.0.1:{free_port()}/v1/licenses/introspect",
    ).test_client()
    response = client.get("/reports/export", headers=bearer(make_token()))
    assert_refused(response, 503, None, "unavailable")


def test_authoritative_off_never_calls_introspect(
    client: FlaskClient, jwks_server: _JWKSServer, make_token: TokenFactory
) -> None:
    assert client.get("/reports/export", headers=bearer(make_token())).status_code == 200
    assert jwks_server.introspect_calls == []


# -- decorator API misuse fails at import time, not per request ----------------------------------


def test_decorator_misuse_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs feature names"):
        requires_feature(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one feature"):
        requires_feature()
    with pytest.raises(TypeError, match="at least one feature"):
        requires_any_feature()
    with pytest.raises(TypeError, match="non-empty strings"):
        requires_feature("")
    with pytest.raises(TypeError, match="plan="):
        requires_license(plan=[])


def test_wrapped_view_keeps_its_name_and_kind() -> None:
    import inspect

    @requires_feature("export")
    async def report(year: int) -> str:
        return str(year)

    @requires_license
    def summary(year: int) -> str:
        return str(year)

    assert report.__name__ == "report" and inspect.iscoroutinefunction(report)
    assert summary.__name__ == "summary" and not inspect.iscoroutinefunction(summary)
    assert list(inspect.signature(report).parameters) == ["year"]


def test_gate_without_extension_explains_itself() -> None:
    app = Flask(__name__)
    add_gated_routes(app)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="forget to call LicenseChain"):
        app.test_client().get("/reports/export", headers=bearer("x.y.z"))


# -- issuer mode: the license server gating its own routes --------------------------------------


@pytest.fixture
def issuer_app(tmp_path: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True,
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{tmp_path}/licensechain.db",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_RATELIMIT_ENABLED=False,
    )
    LicenseChain(app)
    add_gated_routes(app)
    return app


def issue_token(app: Flask, **license_fields: Any) -> tuple[Any, str]:
    """A license in the issuer's store and a token for it from the real verify endpoint."""
    store = get_state(app).store
    assert store is not None
    seller_app = store.apps.create("Gate test app", tier="pro")
    fields: dict[str, Any] = {"plan": "pro", "features": ["export"], **license_fields}
    lic = store.licenses.create(seller_app.id, **fields)
    answer = app.test_client().post("/v1/licenses/verify", json={"key": lic.key}).get_json()
    assert answer["valid"] is True, answer
    return lic, answer["license_token"]


def admin_headers(app: Flask, *scopes: str) -> dict[str, str]:
    store = get_state(app).store
    assert store is not None
    _, plaintext = store.api_keys.create("gate tests", scopes)
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.mark.parametrize("path", ["/reports/export", "/reports/export-async"])
def test_issuer_mode_token_from_verify_passes_the_gate(issuer_app: Flask, path: str) -> None:
    lic, token = issue_token(issuer_app, plan="pro", features=["export", "audit"])
    response = issuer_app.test_client().get(path, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["sub"] == lic.id
    assert body["aud"] == [lic.app_id]
    assert body["plan"] == "pro" and body["features"] == ["audit", "export"]
    assert body["iss"] == ISSUER


def test_issuer_mode_feature_and_missing_token(issuer_app: Flask) -> None:
    _, token = issue_token(issuer_app, features=["audit"])
    client = issuer_app.test_client()
    assert_refused(
        client.get("/reports/export", headers=bearer(token)),
        403,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
    )
    assert_refused(client.get("/reports/export"), 401, CHALLENGE, "unauthorized")


def test_issuer_mode_gate_checks_its_own_audience(issuer_app: Flask, tmp_path: Any) -> None:
    _, token = issue_token(issuer_app)
    other_lic, other_token = issue_token(issuer_app)
    # A second app on the same store, gating for one seller app only. Its shared verifier
    # (the one introspect uses) still accepts both apps' tokens.
    gated = Flask(__name__, instance_path=str(tmp_path / "instance"))
    gated.config.update(
        TESTING=True,
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{tmp_path}/licensechain.db",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_AUDIENCE=other_lic.app_id,
    )
    LicenseChain(gated)
    add_gated_routes(gated)
    client = gated.test_client()
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    assert client.get("/reports/export", headers=bearer(other_token)).status_code == 200
    assert get_state(gated).verifier.verify(token).sub  # introspect's view: still valid


def test_issuer_mode_api_revoke_and_activate_reach_the_gate_at_once(issuer_app: Flask) -> None:
    lic, token = issue_token(issuer_app)
    client = issuer_app.test_client()
    admin = admin_headers(issuer_app, "licenses:write")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200  # warm
    assert client.patch(f"/v1/licenses/{lic.id}/suspend", headers=admin, json={}).status_code == 200
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    assert (
        client.patch(f"/v1/licenses/{lic.id}/activate", headers=admin, json={}).status_code == 200
    )
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200


def test_issuer_mode_revoke_token_reaches_the_gate_at_once(issuer_app: Flask) -> None:
    _, token = issue_token(issuer_app)
    client = issuer_app.test_client()
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    revoked = client.post(
        "/v1/licenses/revoke-token",
        headers=admin_headers(issuer_app, "tokens:revoke"),
        json={"license_token": token},
    )
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )


def test_issuer_authoritative_mode_reads_the_live_status(tmp_path: Any) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True,
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{tmp_path}/licensechain.db",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_RATELIMIT_ENABLED=False,
        LICENSECHAIN_AUTHORITATIVE=True,
        LICENSECHAIN_AUTHORITATIVE_CACHE_TTL=0,
    )
    LicenseChain(app)
    add_gated_routes(app)
    lic, token = issue_token(app)
    client = app.test_client()
    store = get_state(app).store
    assert store is not None
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    # Changed in the store behind the API's back (no denylist entry): only live status sees it.
    store.licenses.set_status(lic.id, "SUSPENDED")
    assert_refused(
        client.get("/reports/export", headers=bearer(token)), 401, INVALID_TOKEN, "unauthorized"
    )
    store.licenses.set_status(lic.id, "ACTIVE")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    store.licenses.set_status(lic.id, "REVOKED")
    assert client.get("/reports/export", headers=bearer(token)).status_code == 401


def test_issuer_gate_follows_a_suspension_written_straight_to_the_store(
    issuer_app: Flask,
) -> None:
    # Written by another process or the CLI: the store records the block, and this
    # process's denylist reads it within one poll interval, without authoritative mode.
    lic, token = issue_token(issuer_app)
    store = get_state(issuer_app).store
    assert store is not None
    client = issuer_app.test_client()
    assert client.get("/reports/export", headers=bearer(token)).status_code == 200
    store.licenses.set_status(lic.id, "SUSPENDED")
    deadline = time.monotonic() + 10
    while client.get("/reports/export", headers=bearer(token)).status_code == 200:
        assert time.monotonic() < deadline, "the suspension never reached the gate"
        time.sleep(0.05)
    response = client.get("/reports/export", headers=bearer(token))
    assert_refused(response, 401, INVALID_TOKEN, "unauthorized")


def test_issuer_authoritative_mode_fails_closed_when_the_store_fails(tmp_path: Any) -> None:
    import sqlalchemy.exc

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True,
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{tmp_path}/licensechain.db",
        LICENSECHAIN_RATELIMIT_ENABLED=False,
        LICENSECHAIN_AUTHORITATIVE=True,
    )
    LicenseChain(app)
    add_gated_routes(app)
    _, token = issue_token(app)
    store = get_state(app).store
    assert store is not None

    def broken(license_id: str) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("database is gone"))

    store.licenses.get = broken  # type: ignore[method-assign]
    response = app.test_client().get("/reports/export", headers=bearer(token))
    assert_refused(response, 503, None, "unavailable")


TYPED_VIEWS = """
from typing import assert_type

from flask_licensechain import requires_any_feature, requires_feature, requires_license


@requires_feature("export", plan="pro")
def sync_view(report_id: int, *, fmt: str = "csv") -> dict[str, str]:
    return {}


@requires_any_feature("a", "b")
async def async_view(report_id: int) -> str:
    return ""


@requires_license
def bare(name: str) -> int:
    return 1


@requires_license(plan={"pro", "enterprise"})
async def with_plan() -> None:
    return None


async def use_them() -> None:
    assert_type(sync_view(1, fmt="x"), dict[str, str])
    pending = async_view(1)
    assert_type(await pending, str)
    assert_type(await async_view(1), str)
    assert_type(bare("x"), int)
    assert_type(await with_plan(), None)
    sync_view("not an int")  # the one expected error
"""


@pytest.mark.slow
def test_decorated_views_keep_their_signatures_for_mypy(tmp_path: Any) -> None:
    from mypy import api as mypy_api

    snippet = tmp_path / "typed_views.py"
    snippet.write_text(TYPED_VIEWS)
    stdout, _, _ = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, stdout
    assert 'Argument 1 to "sync_view" has incompatible type "str"; expected "int"' in errors[0]


# -- every hostile vector of tests/vectors/ is a 401 through the gate, never a 500 -----------------


def vector_app(case: Any, tmp_path: Any) -> Flask:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(case.jwks))
    app = Flask(__name__)
    app.config.update(
        {k: v for k, v in case.app_config().items() if v is not None},
        LICENSECHAIN_JWKS_FILE=str(jwks_file),
    )
    LicenseChain(app)
    denylist = get_state(app).denylist
    for jti in case.revoked_jtis:
        denylist.revoke_jti(jti, 3600)
    for sub in case.revoked_subs:
        denylist.revoke_sub(sub, 3600)
    add_gated_routes(app)
    return app


def raw_get(app: Flask, path: str, authorization: str) -> Any:
    """The header value exactly as given, straight into the WSGI app: the test client would
    refuse some of these bytes, a lax front server might pass them."""
    from flask import Response
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path=path, method="GET").get_environ()
    environ["HTTP_AUTHORIZATION"] = authorization
    return Response.from_app(app, environ)


HOSTILE_NAMES = [c.name for c in load_cases()]
CONTROL_NAMES = [c.name for c in load_controls()]
_loaded: dict[str, tuple[float, dict[str, Any]]] = {}


def fresh_case(name: str, section: str) -> Any:
    """The case built against the clock of now: its times are relative to ``now``, and a
    token built at collection time could drift in or out of the leeway by test time."""
    loaded_at, cases = _loaded.get(section, (0.0, {}))
    if time.time() - loaded_at > 1.0:
        loader = load_cases if section == "cases" else load_controls
        cases = {c.name: c for c in loader()}
        _loaded[section] = (time.time(), cases)
    return cases[name]


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
