"""Hostile changes to a license against its outstanding tokens: the changes that look like
narrowings but are not (reorder, duplicates, equal bounds) void nothing; every route to a
status change voids; a narrowing survives a later activation; bad revoke-token input is a
400, never a 500."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import redis as redis_lib
import sqlalchemy as sa
from issuer_support import Issuer, decode_unverified, error_body
from test_revocation import refuses

from flask_licensechain.core.denylist import MemoryDenylist
from flask_licensechain.core.denylist.redis import RedisDenylist
from flask_licensechain.store.schema import revocation_counter

pytest_plugins = ["issuer_fixtures"]  # the issuer fixtures


def _licensed(issuer: Issuer, **fields: Any) -> tuple[str, str]:
    """A license with two bound devices and a token issued in an earlier second."""
    fields.setdefault("plan", "pro")
    fields.setdefault("features", ["export", "reports"])
    fields.setdefault("max_devices", 2)
    fields.setdefault("expires_at", datetime.now(UTC) + timedelta(days=30))
    lic = issuer.new_license(issuer.new_app(tier="enterprise").id, **fields)
    issuer.token_for(lic.key, hwuid="hw-1")
    token = issuer.token_for(lic.key, hwuid="hw-2")
    time.sleep(1.0)  # the change comes in a later second than the issuance
    return lic.id, token


NOT_NARROWINGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "features reordered": ("PATCH", "", {"features": ["reports", "export"]}),
    "features duplicated": ("PATCH", "", {"features": ["export", "reports", "export"]}),
    "same plan again": ("PATCH", "", {"plan": "pro"}),
    "maxDevices equal to the bound count": ("PATCH", "", {"maxDevices": 2}),
    "same expiry again": ("PATCH", "", {}),
    "PUT with the same rights": ("PUT", "", {"features": ["export", "reports"]}),
    "activate an active license": ("PATCH", "/activate", {}),
    "status ACTIVE in lower case": ("PATCH", "/status", {"status": "active"}),
}


@pytest.mark.parametrize("change", list(NOT_NARROWINGS))
def test_a_change_that_takes_nothing_away_voids_nothing(sqlite_issuer: Issuer, change: str) -> None:
    issuer = sqlite_issuer
    lid, token = _licensed(issuer)
    method, suffix, body = NOT_NARROWINGS[change]
    response = issuer.client.open(
        f"/v1/licenses/{lid}{suffix}", method=method, json=body, headers=issuer.auth()
    )
    assert response.status_code == 200, response.get_json()
    assert not refuses(issuer, token)
    assert issuer.introspect(token)["active"] is True


def test_releasing_a_device_that_is_not_bound_voids_nothing(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    lid, token = _licensed(issuer)
    response = issuer.client.delete(f"/v1/licenses/{lid}/devices/hw-9", headers=issuer.auth())
    assert response.status_code == 404
    assert not refuses(issuer, token)


VOIDING_ROUTES: dict[str, tuple[str, str, dict[str, Any] | None, str]] = {
    "PUT removes a feature": ("PUT", "", {"features": ["export"]}, "token_revoked"),
    "feature case changed": ("PATCH", "", {"features": ["Export", "reports"]}, "token_revoked"),
    "plan set to null": ("PATCH", "", {"plan": None}, "token_revoked"),
    "PATCH status in lower case": ("PATCH", "", {"status": "suspended"}, "license_suspended"),
    "PATCH /status": ("PATCH", "/status", {"status": "Revoked"}, "license_revoked"),
    "DELETE": ("DELETE", "", None, "license_revoked"),
    "expiry set in the past by PATCH": (
        "PATCH",
        "",
        {"expires_at": "2000-01-01T00:00:00Z"},
        "license_expired",
    ),
}


@pytest.mark.parametrize("change", list(VOIDING_ROUTES))
def test_every_route_that_narrows_voids(sqlite_issuer: Issuer, change: str) -> None:
    issuer = sqlite_issuer
    lid, token = _licensed(issuer)
    method, suffix, body, reason = VOIDING_ROUTES[change]
    response = issuer.client.open(
        f"/v1/licenses/{lid}{suffix}", method=method, json=body, headers=issuer.auth()
    )
    assert response.status_code == 200, response.get_json()
    assert refuses(issuer, token)
    assert issuer.introspect(token) == {"active": False, "reason": reason}


def test_expiry_removed_then_restored_voids_what_was_issued_meanwhile(
    sqlite_issuer: Issuer,
) -> None:
    issuer = sqlite_issuer
    soon = datetime.now(UTC) + timedelta(hours=2)
    lid, _ = _licensed(issuer, expires_at=soon)
    assert (
        issuer.client.patch(
            f"/v1/licenses/{lid}", json={"expiresAt": None}, headers=issuer.auth()
        ).status_code
        == 200
    )
    key = issuer.store.licenses.get(lid).key
    perpetual = issuer.token_for(key, hwuid="hw-1")  # exp: a full day, no license_exp
    assert not refuses(issuer, perpetual)  # removing the expiry widened: nothing void
    time.sleep(1.0)
    response = issuer.client.patch(
        f"/v1/licenses/{lid}", json={"expiresAt": soon.isoformat()}, headers=issuer.auth()
    )
    assert response.status_code == 200
    assert refuses(issuer, perpetual)


def test_activation_lifts_the_block_but_not_an_earlier_narrowing(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    lid, narrowed = _licensed(issuer)
    key = issuer.store.licenses.get(lid).key
    issuer.client.patch(f"/v1/licenses/{lid}", json={"features": ["export"]}, headers=issuer.auth())
    fresh = issuer.token_for(key, hwuid="hw-1")
    time.sleep(1.0)
    for step in ("suspend", "activate"):
        response = issuer.client.patch(f"/v1/licenses/{lid}/{step}", headers=issuer.auth())
        assert response.status_code == 200, response.get_json()
    assert not refuses(issuer, fresh)  # the suspension is lifted for it
    assert refuses(issuer, narrowed)  # the narrowing before it stays
    assert issuer.introspect(narrowed)["active"] is False


def test_a_revoked_license_cannot_be_activated(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    lid, token = _licensed(issuer)
    issuer.client.patch(f"/v1/licenses/{lid}/revoke", headers=issuer.auth())
    for method, suffix, body in (
        ("PATCH", "/activate", None),
        ("PATCH", "/status", {"status": "ACTIVE"}),
        ("PATCH", "", {"status": "active"}),
        ("PUT", "", {"status": "ACTIVE"}),
    ):
        response = issuer.client.open(
            f"/v1/licenses/{lid}{suffix}", method=method, json=body, headers=issuer.auth()
        )
        error_body(response, 409, "conflict")
    assert refuses(issuer, token)


@pytest.mark.parametrize(
    "body",
    [
        {"jti": 5},
        {"jti": ["a"]},
        {"jti": {"a": 1}},
        {"jti": True},
        {"jti": ""},
        {"jti": "x" * 100_000},
        {"license_token": 7},
        {"license_token": "not.a.jwt"},
        {"token": ["a.b.c"]},
    ],
)
def test_revoke_token_rejects_bad_input_with_400(sqlite_issuer: Issuer, body: Any) -> None:
    issuer = sqlite_issuer
    response = issuer.post("/v1/licenses/revoke-token", body, headers=issuer.auth())
    assert response.status_code in {400, 413}, response.get_json()
    assert response.get_json()["error"] in {"invalid_request", "payload_too_large"}


def test_an_app_limited_key_cannot_revoke_another_apps_token(sqlite_issuer: Issuer) -> None:
    """The jti of another app's token, in an unsigned token that names both apps."""
    issuer = sqlite_issuer
    mine, theirs = issuer.new_app(), issuer.new_app(name="Other App")
    victim = issuer.token_for(issuer.new_license(theirs.id).key)
    _, claims = decode_unverified(victim)
    _, limited = issuer.store.api_keys.create("app key", ["tokens:revoke"], app_id=mine.id)
    forged = jwt.encode({**claims, "aud": [mine.id, theirs.id]}, "k" * 32, algorithm="HS256")
    response = issuer.post(
        "/v1/licenses/revoke-token", {"license_token": forged}, headers=issuer.auth(limited)
    )
    assert response.status_code in {400, 404}, response.get_json()
    assert not refuses(issuer, victim)
    # Its own app's token it may revoke.
    own = issuer.token_for(issuer.new_license(mine.id).key)
    response = issuer.post(
        "/v1/licenses/revoke-token", {"license_token": own}, headers=issuer.auth(limited)
    )
    assert response.status_code == 200, response.get_json()
    assert refuses(issuer, own)


def test_a_change_that_waits_for_the_write_lock_voids_tokens_issued_meanwhile(
    sqlite_issuer: Issuer,
) -> None:
    """The mark's time is the change's, taken once it holds the license: a change queued
    behind another writer must not date its mark from before the wait, when a verify
    meanwhile issued a token with the old rights."""
    issuer = sqlite_issuer
    lic = issuer.new_license(features=["export", "reports"])
    _, template = decode_unverified(issuer.token_for(lic.key))
    db = issuer.store.licenses._db
    held, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with db.write():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert held.wait(30)
    changer = threading.Thread(
        target=lambda: issuer.store.licenses.update(lic.id, features=["export"])
    )
    changer.start()  # takes its time now, then queues behind the holder
    time.sleep(1.2)
    assert issuer.store.licenses.get(lic.id).features == ("export", "reports")  # not landed
    # A verify now reads the old rights and issues a token with them.
    iat = int(time.time())
    token = issuer.state.keyring.sign(
        {**template, "iat": iat, "nbf": iat, "exp": iat + 600, "jti": secrets.token_urlsafe(16)}
    )
    release.set()
    holder.join(30)
    changer.join(30)
    assert issuer.store.licenses.get(lic.id).features == ("export",)
    assert refuses(issuer, token)


@pytest.mark.parametrize(
    ("start", "body"),
    [
        ({"plan": None}, {"plan": None}),
        ({"plan": None}, {"plan": ""}),
        ({"plan": "pro"}, {"plan": "pro"}),
        ({"features": []}, {"features": []}),
        ({"expires_at": None}, {"expiresAt": None}),
    ],
)
def test_a_no_op_in_another_spelling_voids_nothing(
    sqlite_issuer: Issuer, start: dict[str, Any], body: dict[str, Any]
) -> None:
    issuer = sqlite_issuer
    lid, token = _licensed(issuer, **start)
    response = issuer.client.patch(f"/v1/licenses/{lid}", json=body, headers=issuer.auth())
    assert response.status_code in {200, 400}, response.get_json()
    assert not refuses(issuer, token)


def test_a_copy_follows_a_store_whose_counter_went_back(sqlite_issuer: Issuer) -> None:
    """The store restored from a backup (or its counter row recreated): the counter is lower
    than the copy's, and the next revocations reuse change numbers the copy has seen."""
    issuer = sqlite_issuer
    revocations = issuer.store.revocations
    now = time.time()
    for n in range(3):
        revocations.revoke_token(f"before-{n}", now + 600, now)
    copy = MemoryDenylist(revocations, poll_interval=0.0)
    assert copy.is_revoked("before-0", "lic", 0)
    with issuer.store.licenses._db.write() as conn:  # the restore
        conn.execute(sa.update(revocation_counter).values(value=0))
    revocations.revoke_token("after-restore", now + 600, now)
    assert copy.is_revoked("after-restore", "lic", 0)


@pytest.mark.redis
def test_redis_follows_a_store_whose_counter_went_back(
    sqlite_issuer: Issuer, redis_url: str
) -> None:
    """The same restore, with Redis: a revocation written while Redis was away reaches it."""
    issuer = sqlite_issuer
    revocations = issuer.store.revocations
    namespace = f"test-rev-hostile-{secrets.token_hex(6)}:"
    redis_side = RedisDenylist.from_uri(redis_url, namespace=namespace)
    try:
        now = time.time()
        for n in range(3):
            revocations.revoke_token(f"before-{n}", now + 600, now)  # not announced
        assert redis_side.sync_from(revocations) == 3
        with issuer.store.licenses._db.write() as conn:  # the restore
            conn.execute(sa.update(revocation_counter).values(value=0))
        revocations.revoke_token("after-restore", now + 600, now)  # Redis was away
        redis_side.sync_from(revocations)
        assert redis_side.is_revoked("after-restore", "lic", 0)
        for n in range(3):  # the counter climbs back past the number Redis had recorded
            revocations.revoke_token(f"later-{n}", now + 600, now)
        redis_side.sync_from(revocations)
        assert all(redis_side.is_revoked(f"later-{n}", "lic", 0) for n in range(3))
    finally:
        raw = redis_lib.Redis.from_url(redis_url)
        stale = list(raw.scan_iter(match=namespace + "*"))
        if stale:
            raw.delete(*stale)
        raw.close()
        redis_side.close()
