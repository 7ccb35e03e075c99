"""Helpers of the in-app gate's tests (``tests/test_gate_*.py``): keys, tokens, a real
JWKS/introspect server on loopback, the gated routes and the refusal check.

The fixtures built on them (``gate_key``, ``stranger_key``, ``jwks_server``,
``make_gate_token``, ``gate_client``, ``issuer_app``) live in ``conftest.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from flask import Flask, jsonify
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
from flask_licensechain.core.gate import REASON_CLASSES
from flask_licensechain.core.keys import SigningKey

ISSUER = "https://licenses.example.test"
APP_ID = "app_integrator_1"
CHALLENGE = 'Bearer realm="licensechain"'
INVALID_TOKEN = 'Bearer realm="licensechain", error="invalid_token"'
INSUFFICIENT_SCOPE = 'Bearer realm="licensechain", error="insufficient_scope"'


# -- keys, tokens and a real JWKS server ------------------------------------------


class JWKSServer:
    """A loopback HTTP server answering the JWKS and (optionally) introspect."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.introspect_answer: tuple[int, Any] = (200, {"active": True, "status": "ACTIVE"})
        self.introspect_calls: list[dict[str, Any]] = []
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

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/licenses"

    def __enter__(self) -> JWKSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


TokenFactory = Callable[..., str]


def token_factory(key: SigningKey, issuer: str, app_id: str) -> TokenFactory:
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
        claims = {k: v for k, v in claims.items() if v is not DROP}
        signer = signer or key
        return jwt.encode(
            claims,
            signer.private_key,
            algorithm="RS256",
            headers={"kid": key.kid, **(headers or {})},
        )

    return make


DROP: Any = object()


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

    @app.post("/reports/run")
    @requires_feature("export")
    def run_report() -> Any:
        return jsonify(sub=current_license.sub)

    @app.get("/open")
    def open_route() -> Any:
        return jsonify(license=get_current_license() is not None)


def integrator_app(server: JWKSServer, **config: Any) -> Flask:
    """An integrator app on ``server``'s JWKS with the gated routes; ``config`` adds to it."""
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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(
    response: Any,
    status: int,
    challenge: str | None,
    code: str,
    *,
    request_id: str | None = None,
    reason: str | None = None,
) -> None:
    """The contract's refusal: status, challenge (with ``error_description`` = ``reason``
    when a token was sent), JSON body (with ``reason`` on every 401), no caching, the id."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    if status == 401:
        assert body["reason"] in REASON_CLASSES
        if reason is not None:
            assert body["reason"] == reason
        if challenge is not None and challenge != CHALLENGE:
            challenge += f', error_description="{body["reason"]}"'
    assert response.headers.get("WWW-Authenticate") == challenge
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    expected = {"error", "message", "request_id"} | ({"reason"} if status == 401 else set())
    assert set(body) == expected
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
    if request_id is not None:
        assert body["request_id"] == request_id


def issuer_app_with(tmp_path: Any, *, gated: bool = True, **config: Any) -> Flask:
    """An issuer app on a SQLite store in ``tmp_path`` (``TESTING``, no rate limits), with
    the gated routes unless ``gated=False``; ``config`` adds ``LICENSECHAIN_*`` values."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True,
        LICENSECHAIN_DATABASE_URL=f"sqlite:///{tmp_path}/licensechain.db",
        LICENSECHAIN_ISSUER=ISSUER,
        LICENSECHAIN_RATELIMIT_ENABLED=False,
        **config,
    )
    LicenseChain(app)
    if gated:
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


def vector_app(case: Any, tmp_path: Any) -> Flask:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(case.jwks))
    app = Flask(__name__)
    config = {k: v for k, v in case.app_config().items() if v is not None}
    if "LICENSECHAIN_AUDIENCE" not in config:
        config["LICENSECHAIN_VERIFY_AUDIENCE"] = False  # the case checks no audience
    app.config.update(config, LICENSECHAIN_JWKS_FILE=str(jwks_file))
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
