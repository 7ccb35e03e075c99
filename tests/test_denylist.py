"""The denylist stores: memory://, redis:// (direct), and choosing them by URI."""

from __future__ import annotations

import logging
import secrets
import time

import pytest
import redis as redis_lib
from conftest import free_port

from flask_licensechain.core.denylist import MemoryDenylist, denylist_from_uri
from flask_licensechain.core.denylist.mirror import DenylistMirror
from flask_licensechain.core.denylist.redis import RedisDenylist, RedisKeys
from flask_licensechain.core.errors import Unavailable

KEYS = RedisKeys()


def unique(kind: str) -> str:
    return f"test-denylist-{kind}-{secrets.token_hex(6)}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- memory ----------------------------------------------------------------------


def test_memory_denylist_revokes_until_the_ttl_runs_out() -> None:
    clock = Clock()
    denylist = MemoryDenylist(clock=clock)
    denylist.revoke_jti("j1", 10)
    denylist.revoke_sub("s1", 20)
    assert denylist.is_revoked("j1", "x", 0) and denylist.is_revoked("x", "s1", 0)
    assert not denylist.is_revoked("j2", "s2", 0)
    clock.now += 10
    assert not denylist.is_revoked("j1", "x", 0)
    assert denylist.is_revoked("x", "s1", 0)
    denylist.unrevoke_sub("s1")
    assert not denylist.is_revoked("x", "s1", 0)


def test_memory_denylist_keeps_the_longer_ttl_and_ignores_non_positive() -> None:
    clock = Clock()
    denylist = MemoryDenylist(clock=clock)
    denylist.revoke_jti("j", 100)
    denylist.revoke_jti("j", 5)
    denylist.revoke_jti("never", 0)
    clock.now += 50
    assert denylist.is_revoked("j", "", 0)
    assert not denylist.is_revoked("never", "", 0)


# -- redis (direct) -----------------------------------------------------------------


def test_redis_denylist_writes_ttl_keys_and_announces_each_change(redis_url: str) -> None:
    denylist = RedisDenylist.from_uri(redis_url)
    raw = redis_lib.Redis.from_url(redis_url)
    pubsub = raw.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(KEYS.events)
    pubsub.get_message(timeout=1)
    jti, sub = unique("j"), unique("s")
    try:
        denylist.revoke_jti(jti, 60)
        denylist.revoke_sub(sub, 30)
        assert denylist.is_revoked(jti, "x", 0) and denylist.is_revoked("x", sub, 0)
        assert 0 < raw.pttl(KEYS.key("jti", jti)) <= 60_000
        denylist.revoke_jti(jti, 5)  # a shorter second write keeps the longer TTL
        assert raw.pttl(KEYS.key("jti", jti)) > 50_000
        denylist.unrevoke_sub(sub)
        assert not denylist.is_revoked("x", sub, 0)
        events = []
        deadline = time.monotonic() + 5
        while len(events) < 4 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message":
                text = message["data"].decode()
                if jti in text or sub in text:
                    events.append(text.rsplit(" ", 1)[0] if text[0] == "+" else text)
        assert events == [f"+j {jti}", f"+s {sub}", f"+j {jti}", f"-s {sub}"]
    finally:
        raw.delete(KEYS.key("jti", jti), KEYS.key("block", sub))
        pubsub.close()
        raw.close()
        denylist.close()


def test_redis_down_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(Unavailable) as err:
        RedisDenylist.from_uri(url).is_revoked("j", "s", 0)
    assert err.value.status_code == 503
    with caplog.at_level(logging.WARNING, logger="licensechain.denylist"):
        assert RedisDenylist.from_uri(url, fail_open=True).is_revoked("j", "s", 0) is False
    assert "failing open" in caplog.text


def test_redis_down_fails_closed_through_the_mirror_too() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    mirror = denylist_from_uri(url)
    try:
        with pytest.raises(Unavailable):
            mirror.is_revoked("j", "s", 0)
    finally:
        mirror.close()
    opened = denylist_from_uri(url, fail_open=True)
    try:
        assert opened.is_revoked("j", "s", 0) is False
    finally:
        opened.close()


# -- by URI ------------------------------------------------------------------------------


def test_denylist_from_uri_chooses_the_store(redis_url: str) -> None:
    assert isinstance(denylist_from_uri("memory://"), MemoryDenylist)
    mirrored = denylist_from_uri(redis_url)
    direct = denylist_from_uri(redis_url, mirror=False)
    try:
        assert isinstance(mirrored, DenylistMirror)
        assert isinstance(direct, RedisDenylist)
        assert mirrored.fail_open is False
    finally:
        mirrored.close()
        direct.close()
    with pytest.raises(ValueError):
        denylist_from_uri("mongodb://127.0.0.1/x")
