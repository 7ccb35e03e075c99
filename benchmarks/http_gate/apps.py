"""The three WSGI apps the HTTP benchmark serves with gunicorn: one route, three gates.

``gunicorn 'apps:create_app("ungated")'`` (or ``"licensechain"``, ``"jwt_extended"``).
Configuration comes from the environment that ``run.py`` sets:

- ``BENCH_JWKS_FILE``, ``BENCH_PUBLIC_KEY_FILE``: the same RSA key as JWKS and as PEM;
- ``BENCH_ISSUER``, ``BENCH_AUDIENCE``: checked by both gates;
- ``BENCH_REDIS_URL``: our denylist and flask-jwt-extended's blocklist;
- ``BENCH_BLOCKLIST_PREFIX``: the Redis key prefix of flask-jwt-extended's blocklist.

Every variant answers the same JSON, and both gates check signature, expiry, issuer,
audience, a revocation list in Redis, and that the token grants the ``export`` feature.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify

ROUTE = "/reports/export"
FEATURE = "export"


def create_app(variant: str) -> Flask:
    builders = {
        "ungated": _ungated,
        "licensechain": _licensechain,
        "jwt_extended": _jwt_extended,
    }
    app = Flask(f"bench_{variant}")
    builders[variant](app)
    return app


def _ungated(app: Flask) -> None:
    @app.get(ROUTE)
    def export() -> Any:
        return jsonify(ok=True)


def _licensechain(app: Flask) -> None:
    from flask_licensechain import LicenseChain, requires_feature

    app.config.update(
        LICENSECHAIN_JWKS_FILE=os.environ["BENCH_JWKS_FILE"],
        LICENSECHAIN_ISSUER=os.environ["BENCH_ISSUER"],
        LICENSECHAIN_AUDIENCE=os.environ["BENCH_AUDIENCE"],
        LICENSECHAIN_DENYLIST_URL=os.environ["BENCH_REDIS_URL"],
    )
    LicenseChain(app)

    @app.get(ROUTE)
    @requires_feature(FEATURE)
    def export() -> Any:
        return jsonify(ok=True)


def _jwt_extended(app: Flask) -> None:
    import redis
    from flask_jwt_extended import JWTManager, get_jwt, jwt_required

    with open(os.environ["BENCH_PUBLIC_KEY_FILE"], encoding="ascii") as f:
        public_pem = f.read()
    app.config.update(
        JWT_ALGORITHM="RS256",
        JWT_DECODE_ALGORITHMS=["RS256"],
        JWT_PUBLIC_KEY=public_pem,
        JWT_TOKEN_LOCATION=["headers"],
        JWT_DECODE_ISSUER=os.environ["BENCH_ISSUER"],
        JWT_DECODE_AUDIENCE=os.environ["BENCH_AUDIENCE"],
    )
    if private_key_file := os.environ.get("BENCH_PRIVATE_KEY_FILE"):
        with open(private_key_file, encoding="ascii") as f:  # only run.py, to mint a token
            app.config["JWT_PRIVATE_KEY"] = f.read()
    manager = JWTManager(app)
    blocklist = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    prefix = os.environ.get("BENCH_BLOCKLIST_PREFIX", "bench:fjwt:block:")

    @manager.token_in_blocklist_loader
    def is_blocked(jwt_header: dict[str, Any], jwt_payload: dict[str, Any]) -> bool:
        return bool(blocklist.exists(prefix + jwt_payload["jti"]))

    @app.get(ROUTE)
    @jwt_required()  # type: ignore[untyped-decorator]  # flask-jwt-extended ships no types
    def export() -> Any:
        if FEATURE not in get_jwt().get("features", ()):
            return jsonify(error="insufficient_scope"), 403
        return jsonify(ok=True)
