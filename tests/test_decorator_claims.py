"""``current_license`` in a view: the verified claims are shared (cached), so they are read-only;
an RFC 7515 segment of impossible length is a 401 like any malformed token, never a 500."""

from __future__ import annotations

import dataclasses

from flask import jsonify
from flask.typing import ResponseReturnValue
from issuer_support import Issuer

from flask_licensechain import current_license, requires_feature, requires_license

pytest_plugins = ["issuer_fixtures"]

INVALID_TOKEN = 'Bearer realm="licensechain", error="invalid_token"'


def test_a_view_cannot_change_what_the_next_request_sees(sqlite_issuer: Issuer) -> None:
    app = sqlite_issuer.app
    attempts: list[str] = []
    lic = sqlite_issuer.new_license(features=["export"])

    @app.get("/mutate")
    @requires_license(audience=lic.app_id)
    def mutate() -> ResponseReturnValue:
        try:
            current_license.features = frozenset({"admin"})  # type: ignore[misc]
        except dataclasses.FrozenInstanceError:
            attempts.append("features")
        try:
            current_license.raw["features"] = ["admin"]  # type: ignore[index]
        except TypeError:
            attempts.append("raw")
        return jsonify(features=sorted(current_license.features))

    @app.get("/admin")
    @requires_feature("admin", audience=lic.app_id)
    def admin() -> ResponseReturnValue:
        return jsonify(ok=True)

    token = sqlite_issuer.token_for(lic.key)
    auth = {"Authorization": f"Bearer {token}"}
    first = sqlite_issuer.client.get("/mutate", headers=auth)
    assert first.status_code == 200 and first.get_json() == {"features": ["export"]}
    assert attempts == ["features", "raw"]
    # the same token again: answered from the verified-token cache, unchanged
    assert sqlite_issuer.client.get("/admin", headers=auth).status_code == 403
    again = sqlite_issuer.client.get("/mutate", headers=auth)
    assert again.get_json() == {"features": ["export"]}


def test_truncated_signature_segment_is_401_not_500(sqlite_issuer: Issuer) -> None:
    app = sqlite_issuer.app
    lic = sqlite_issuer.new_license()

    @app.get("/gated")
    @requires_license(audience=lic.app_id)
    def gated() -> ResponseReturnValue:
        return jsonify(ok=True)

    head, payload, _ = sqlite_issuer.token_for(lic.key).split(".")
    response = sqlite_issuer.client.get(
        "/gated", headers={"Authorization": f"Bearer {head}.{payload}.AAAAA"}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(INVALID_TOKEN)
    assert response.get_json()["error"] == "unauthorized"
