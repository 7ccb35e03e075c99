"""A throwaway issuer for the gateway tests: one RSA key, its JWKS file, signed tokens."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from flask_licensechain.core.contract import ALGORITHM, build_claims
from flask_licensechain.core.keys import SigningKey

ISSUER = "https://licenses.test"
AUDIENCE = "app_gateway_test"


class TestIssuer:
    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.key = SigningKey.generate()
        self.jwks_file = directory / "jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [self.key.jwk()]}), encoding="utf-8")

    def token(
        self,
        *,
        sub: str | None = None,
        features: tuple[str, ...] = (),
        plan: str | None = "pro",
        audience: str = AUDIENCE,
        **overrides: Any,
    ) -> str:
        claims = build_claims(
            issuer=ISSUER,
            license_id=sub or f"lic_{uuid.uuid4().hex[:12]}",
            app_id=audience,
            seller_tier="pro",
            plan=plan,
            features=features,
            license_exp=None,
            hw_bound=False,
            now=int(time.time()),
        )
        claims.update(overrides)
        return jwt.encode(
            claims, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid}
        )

    @staticmethod
    def claims_of(token: str) -> dict[str, Any]:
        data: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return data
