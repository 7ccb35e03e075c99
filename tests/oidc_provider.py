"""A tiny OpenID Connect provider for the console's SSO tests, run as its own process:

    python tests/oidc_provider.py PORT CLIENT_ID CLIENT_SECRET

It serves discovery, JWKS, ``/authorize`` (no login page: it answers at once for the
identity set with ``POST /control/next`` as JSON ``{"email", "email_verified", "amr",
"acr"}``), ``/token`` (the code grant with client_secret_basic or _post; an RS256 ID token
carrying the request's ``nonce``) and ``/userinfo``. Codes are single use. Loopback only.
"""

from __future__ import annotations

import base64
import secrets
import sys
import time
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, abort, jsonify, redirect, request

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "test-provider-key"


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def create_app(issuer: str, client_id: str, client_secret: str) -> Flask:
    app = Flask(__name__)
    identity: dict[str, Any] = {"email": "nobody@example.test", "email_verified": True}
    codes: dict[str, dict[str, Any]] = {}
    tokens: dict[str, dict[str, Any]] = {}

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        return jsonify(
            issuer=issuer,
            authorization_endpoint=f"{issuer}/authorize",
            token_endpoint=f"{issuer}/token",
            userinfo_endpoint=f"{issuer}/userinfo",
            jwks_uri=f"{issuer}/jwks",
            response_types_supported=["code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256"],
            token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
            scopes_supported=["openid", "email", "profile"],
        )

    @app.get("/jwks")
    def jwks() -> Any:
        public = KEY.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "kid": KID,
            "use": "sig",
            "alg": "RS256",
            "n": _b64(public.n),
            "e": _b64(public.e),
        }
        return jsonify(keys=[key])

    @app.post("/control/next")
    def set_next() -> Any:
        identity.clear()
        identity.update(request.get_json(force=True))
        return jsonify(ok=True)

    @app.get("/authorize")
    def authorize() -> Any:
        if (
            request.args.get("client_id") != client_id
            or request.args.get("response_type") != "code"
        ):
            abort(400)
        code = secrets.token_urlsafe(16)
        codes[code] = {
            "identity": dict(identity),
            "nonce": request.args.get("nonce"),
            "redirect_uri": request.args["redirect_uri"],
        }
        query = urlencode({"code": code, "state": request.args.get("state", "")})
        return redirect(f"{request.args['redirect_uri']}?{query}")

    @app.post("/token")
    def token() -> Any:
        auth = request.authorization
        given_id = auth.username if auth else request.form.get("client_id")
        given_secret = auth.password if auth else request.form.get("client_secret")
        if given_id != client_id or given_secret != client_secret:
            return jsonify(error="invalid_client"), 401
        grant = codes.pop(request.form.get("code", ""), None)
        if grant is None or grant["redirect_uri"] != request.form.get("redirect_uri"):
            return jsonify(error="invalid_grant"), 400
        who = grant["identity"]
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": "sub-" + str(who.get("email")),
            "aud": client_id,
            "iat": now,
            "exp": now + 300,
            "email": who.get("email"),
            "email_verified": who.get("email_verified", False),
        }
        for name in ("amr", "acr"):
            if name in who:
                claims[name] = who[name]
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        id_token = jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": KID})
        access = secrets.token_urlsafe(16)
        tokens[access] = claims
        return jsonify(access_token=access, token_type="Bearer", expires_in=300, id_token=id_token)

    @app.get("/userinfo")
    def userinfo() -> Any:
        header = request.headers.get("Authorization", "")
        claims = tokens.get(header.removeprefix("Bearer "))
        if claims is None:
            abort(401)
        return jsonify({k: claims[k] for k in ("sub", "email", "email_verified")})

    return app


if __name__ == "__main__":
    port, client_id, client_secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    create_app(f"http://127.0.0.1:{port}", client_id, client_secret).run(
        host="127.0.0.1", port=port
    )
