"""Hostile callers of the admin API: an app-limited API key must not reach another app's
objects, whatever it forges."""

from __future__ import annotations

import jwt
from issuer_support import Issuer

pytest_plugins = ["issuer_fixtures"]


def test_app_key_cannot_revoke_another_apps_token_with_a_forged_aud(
    sqlite_issuer: Issuer,
) -> None:
    issuer = sqlite_issuer
    mine, theirs = issuer.new_app(), issuer.new_app(name="Other")
    victim = issuer.token_for(issuer.new_license(theirs.id).key)
    victim_jti = jwt.decode(victim, options={"verify_signature": False})["jti"]
    _, key = issuer.store.api_keys.create("app key", ["tokens:revoke"], app_id=mine.id)
    # an unsigned token naming the key's own app and the victim's jti
    forged = jwt.encode({"jti": victim_jti, "aud": mine.id, "exp": 4102444800}, "k" * 32, "HS256")
    for body in ({"license_token": forged}, {"license_token": forged, "jti": victim_jti}):
        response = issuer.client.post(
            "/v1/licenses/revoke-token", json=body, headers=issuer.auth(key)
        )
        assert response.status_code in (400, 404), response.get_json()
    assert issuer.state.verifier.verify(victim).jti == victim_jti
    # its own app's genuine tokens it still revokes
    own = issuer.token_for(issuer.new_license(mine.id).key)
    response = issuer.client.post(
        "/v1/licenses/revoke-token", json={"license_token": own}, headers=issuer.auth(key)
    )
    assert response.status_code == 200
