"""Signing-key rotation: the new key signs, the old one stays in the JWKS until its last token
has expired, other workers follow, and plain PyJWT + PyJWKClient verify over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from conftest import free_port
from cryptography.hazmat.primitives import serialization
from issuer_support import (
    Issuer,
    close_issuer,
    decode_unverified,
    make_issuer,
)
from werkzeug.serving import make_server

from flask_licensechain.core.keys import SigningKey, generate_private_key
from flask_licensechain.services.signing_keys import rotate_signing_key
from flask_licensechain.store.changes import SYSTEM

pytest_plugins = ["issuer_fixtures"]  # the issuer fixtures


def _kids(issuer: Issuer) -> list[str]:
    return [key["kid"] for key in issuer.client.get("/v1/licenses/jwks").get_json()["keys"]]


def _active_kid(issuer: Issuer) -> str:
    assert issuer.state.keyring is not None
    return issuer.state.keyring.active_key().kid


def test_rotation_keeps_the_old_key_until_its_tokens_expire(issuer: Issuer) -> None:
    lic = issuer.new_license(issuer.new_app(tier="enterprise").id)
    old_kid = _active_kid(issuer)
    old_token = issuer.token_for(lic.key)

    result = rotate_signing_key(issuer.state, SYSTEM)
    assert result.previous_kid == old_kid
    assert result.kid == _active_kid(issuer) != old_kid
    assert _kids(issuer) == [result.kid, old_kid]  # the active key first

    new_token = issuer.token_for(lic.key)
    assert decode_unverified(new_token)[0]["kid"] == result.kid
    assert decode_unverified(old_token)[0]["kid"] == old_kid
    assert issuer.introspect(old_token)["active"] is True
    assert issuer.introspect(new_token)["active"] is True

    # the old key retires once every token it signed is dead: longest TTL, leeway and the
    # workers' reload interval after the rotation
    keys = issuer.state.signing_keys
    # a day (the longest TTL) + the leeway + the key refresh interval
    assert keys.retire_after == timedelta(seconds=86400 + 30 + 5)
    assert result.previous_expires_at is not None
    record = issuer.store.signing_keys.get(old_kid)
    assert record.state == "retiring"
    assert abs(record.expires_at - result.previous_expires_at) < timedelta(milliseconds=1)
    just_before = result.previous_expires_at - timedelta(seconds=1)
    assert issuer.store.signing_keys.retire_expired(just_before) == 0

    retired = issuer.store.signing_keys.retire_expired(result.previous_expires_at)
    assert retired == 1
    assert issuer.state.keyring is not None
    issuer.state.keyring.reload()
    assert _kids(issuer) == [result.kid]
    assert issuer.introspect(old_token) == {"active": False, "reason": "token_invalid"}
    assert issuer.introspect(new_token)["active"] is True
    assert issuer.store.signing_keys.get(old_kid).sealed_private_key is None


def test_expired_retiring_key_leaves_the_jwks_even_before_retire_runs(issuer: Issuer) -> None:
    old_kid = _active_kid(issuer)
    rotate_signing_key(issuer.state, SYSTEM)
    import sqlalchemy as sa

    from flask_licensechain.store.schema import signing_keys

    with issuer.store.engine.begin() as conn:
        conn.execute(
            sa.update(signing_keys)
            .where(signing_keys.c.kid == old_kid)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    issuer.state.keyring.reload()  # type: ignore[union-attr]
    assert old_kid not in _kids(issuer)


def test_rotate_twice_keeps_both_older_keys(issuer: Issuer) -> None:
    first = _active_kid(issuer)
    second = rotate_signing_key(issuer.state, SYSTEM).kid
    third = rotate_signing_key(issuer.state, SYSTEM).kid
    assert _kids(issuer) == [third, second, first]


def test_another_worker_follows_a_rotation(tmp_path: Path) -> None:
    """Two apps on one store are two workers: a rotation by one reaches the other."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    first = make_issuer(tmp_path / "a", db, key_refresh_interval=0)
    second = make_issuer(tmp_path / "b", db, key_refresh_interval=0)
    try:
        assert _active_kid(first) == _active_kid(second)
        lic = first.new_license()
        result = rotate_signing_key(first.state, SYSTEM)
        assert _active_kid(second) == result.kid
        token = second.token_for(lic.key)
        assert decode_unverified(token)[0]["kid"] == result.kid
        assert first.introspect(token)["active"] is True
        assert _kids(second) == _kids(first)
    finally:
        close_issuer(first)
        close_issuer(second)


def test_unknown_kid_triggers_one_reload(tmp_path: Path) -> None:
    """With a long reload interval, a token signed by a key just made elsewhere still verifies."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    first = make_issuer(tmp_path / "a", db)
    second = make_issuer(tmp_path / "b", db, key_refresh_interval=3600)
    try:
        lic = first.new_license()
        rotate_signing_key(first.state, SYSTEM)
        token = first.token_for(lic.key)
        assert second.introspect(token)["active"] is True
    finally:
        close_issuer(first)
        close_issuer(second)


def test_signing_key_file_is_imported_then_rotated_to(tmp_path: Path) -> None:
    pem_path = tmp_path / "signing.pem"
    key = generate_private_key(2048)
    pem_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    expected = SigningKey.from_private_key(key).kid
    db = f"sqlite:///{tmp_path / 'lc.db'}"
    made = make_issuer(tmp_path, db, signing_key_file=str(pem_path))
    try:
        assert _active_kid(made) == expected
        assert _key_events(made) == [("signing_key.create", expected, "file")]
        token = made.token_for(made.new_license().key)
        assert decode_unverified(token)[0]["kid"] == expected
    finally:
        close_issuer(made)
    # a restart with the same file keeps the key
    again = make_issuer(tmp_path / "again", db, signing_key_file=str(pem_path))
    try:
        assert _kids(again) == [expected]
        assert len(_key_events(again)) == 1  # nothing changed, nothing recorded
    finally:
        close_issuer(again)
    # a new file is rotated to; the old key stays trusted for its tokens
    other = generate_private_key(2048)
    pem_path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    rotated = make_issuer(tmp_path / "rotated", db, signing_key_file=str(pem_path))
    try:
        new_kid = SigningKey.from_private_key(other).kid
        assert _kids(rotated) == [new_kid, expected]
        assert _key_events(rotated)[-1] == ("signing_key.rotate", new_kid, "file")
        assert rotated.store.audit.verify().ok
    finally:
        close_issuer(rotated)


def _key_events(issuer: Issuer) -> list[tuple[str, str | None, str | None]]:
    """The signing-key audit events, oldest first: (action, target, data's source)."""
    events = [e for e in issuer.store.audit.list(limit=100) if e.action.startswith("signing_key")]
    return [(e.action, e.target, e.data.get("source")) for e in reversed(events)]


def test_the_first_signing_key_is_an_audit_event(issuer: Issuer) -> None:
    """The key a fresh store makes at start-up is recorded, by the system actor."""
    (event,) = [e for e in issuer.store.audit.list(limit=100) if e.action == "signing_key.create"]
    assert event.target == _active_kid(issuer) and event.data == {"source": "generated"}
    assert event.actor_kind == "system"
    assert issuer.store.audit.verify().ok


def test_unreadable_signing_key_file_fails_at_start(tmp_path: Path) -> None:
    from flask_licensechain.core.keys import KeyMaterialError
    from flask_licensechain.issuer import IssuerConfigurationError

    with pytest.raises(IssuerConfigurationError, match="SIGNING_KEY_FILE"):
        make_issuer(tmp_path / "a", signing_key_file=str(tmp_path / "missing.pem"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(KeyMaterialError):
        make_issuer(tmp_path / "b", signing_key_file=str(bad))


def test_key_size_3072(tmp_path: Path) -> None:
    made = make_issuer(tmp_path, key_size=3072)
    try:
        assert made.state.keyring is not None
        assert made.state.keyring.active_key().private_key.key_size == 3072
        result = rotate_signing_key(made.state, SYSTEM)
        assert made.state.keyring.active_key().kid == result.kid
        assert made.state.keyring.active_key().private_key.key_size == 3072
    finally:
        close_issuer(made)


# -- plain PyJWT + PyJWKClient against the served JWKS, over real HTTP ------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Issuer, str]]:
    made = make_issuer(tmp_path)
    port = free_port()
    server = make_server("127.0.0.1", port, made.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield made, f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        close_issuer(made)


def test_tokens_verify_with_pyjwt_and_pyjwkclient(served: tuple[Issuer, str]) -> None:
    import httpx

    made, base = served
    lic = made.new_license()
    response = httpx.post(f"{base}/v1/licenses/verify", json={"key": lic.key}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["license_jwks_uri"] == f"{base}/v1/licenses/jwks"
    old_token = body["license_token"]

    def check(token: str) -> dict[str, object]:
        client = jwt.PyJWKClient(body["license_jwks_uri"], cache_keys=False)
        signing_key = client.get_signing_key_from_jwt(token)
        claims: dict[str, object] = jwt.decode(
            token,
            signing_key.key,
            algorithms=["RS256"],
            audience=lic.app_id,
            issuer=f"{base}/v1",
            options={"require": ["exp", "iat", "sub", "jti"]},
        )
        return claims

    assert check(old_token)["sub"] == lic.id
    rotate_signing_key(made.state, SYSTEM)
    new_token = httpx.post(f"{base}/v1/licenses/verify", json={"key": lic.key}, timeout=10).json()[
        "license_token"
    ]
    assert decode_unverified(new_token)[0]["kid"] != decode_unverified(old_token)[0]["kid"]
    assert check(new_token)["sub"] == lic.id
    assert check(old_token)["sub"] == lic.id  # the old key is still served
    tampered = new_token[:-6] + ("AAAAAA" if not new_token.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        check(tampered)
