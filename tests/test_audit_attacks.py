"""Attacks on the audit log by someone with only database access (``store/audit.py``), and
on what reaches its MAC'd part: each test tampers the way an attacker would and asserts that
``verify`` names the first broken event, or that personal data stays erasable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from console_support import make_console_app
from issuer_support import close_issuer, make_issuer
from webhooks_support import stub_resolver

from flask_licensechain.console.repository import WebAuthnCredential
from flask_licensechain.console.state import console_state
from flask_licensechain.services import users
from flask_licensechain.store import Actor, Change, Store
from flask_licensechain.store.schema import audit_events, audit_head
from flask_licensechain.webhooks import ssrf

pytest_plugins = ["store_fixtures"]

CLIENT = Actor(kind="client", id="lic_0", ip="198.51.100.4", user_agent="sdk/1")


def record(store: Store, n: int, actor: Actor = CLIENT, **personal: Any) -> None:
    for i in range(n):
        with store.unit_of_work(actor) as unit:
            unit.record(
                Change(action="device.bind", target=f"lic_{i}", app_id="app_1", personal=personal)
            )


def execute(store: Store, statement: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(statement)


def broken(store: Store) -> tuple[int, str]:
    result = store.audit.verify()
    assert result.broken is not None, "the tampering went unnoticed"
    return result.broken.seq, result.broken.breach


def test_personal_columns_forged_with_the_salt_removed_are_caught(store: Store) -> None:
    """Blanking ``personal_salt`` must not let an attacker rewrite the personal columns: an
    erasure blanks them all, so a salt-less event with personal data was edited."""
    record(store, 3, hwuid="machine-1")
    execute(
        store,
        sa.update(audit_events)
        .where(audit_events.c.seq == 2)
        .values(personal_salt=None, actor_ip="203.0.113.66", personal={"hwuid": "framed"}),
    )
    assert broken(store) == (2, "edited")


def test_a_salt_less_event_given_a_user_agent_is_caught(store: Store) -> None:
    record(store, 2, actor=Actor(kind="cli", id="ops"))  # no personal data: no salt
    execute(
        store,
        sa.update(audit_events).where(audit_events.c.seq == 1).values(actor_user_agent="forged"),
    )
    assert broken(store) == (1, "edited")


def test_a_forged_legacy_event_after_the_chain_began_is_caught(store: Store) -> None:
    """An event with no ``seq`` passes as one from before the chain; one written after the
    chain began (a newer row id) is an insertion."""
    record(store, 2)
    execute(
        store,
        sa.insert(audit_events).values(
            action="license.revoke",
            actor="key_admin",
            target="lic_0",
            data={},
            created_at=sa.func.current_timestamp(),
        ),
    )
    result = store.audit.verify()
    assert result.broken is not None, "the forged event went unnoticed"
    assert result.broken.breach == "inserted"


def test_a_head_reset_to_genesis_is_named(store: Store) -> None:
    """Resetting the head to its unsigned first state, events still there: the head was
    edited (not an unknown key)."""
    record(store, 3)
    execute(store, sa.update(audit_head).values(seq=0, mac="0" * 64, key_id=None, head_mac=None))
    assert broken(store) == (0, "edited")  # the head (row id None), at the seq it claims


def test_console_events_keep_personal_data_out_of_the_mac(tmp_path: Path) -> None:
    """The console's events carry e-mail addresses, IPs and passkey names: they go beside
    the event, so that an erasure blanks them and the chain still verifies."""
    state = console_state(make_console_app(tmp_path))
    store = state.store
    owner = Actor(kind="console", id="usr_1", name="owner", ip="192.0.2.1")
    user, _ = users.create_user(state, owner, email="ann@example.com", role="admin")
    visitor = Actor(kind="console", id=users.ANONYMOUS_ID, ip="192.0.2.7")
    users.login_failed(
        state, visitor, email=user.email, ip="192.0.2.7", user=user, now=state.clock(), step="x"
    )
    credential = WebAuthnCredential(
        id="Y3JlZA",
        user_id=user.id,
        name="Ann",
        public_key=b"k",
        sign_count=0,
        transports=(),
        created_at=state.clock(),
        last_used_at=None,
    )
    users.add_passkey(state, Actor(kind="console", id=user.id, name="admin"), credential)
    events = {e.action: e for e in store.audit.list()}
    for event in events.values():
        text = repr(event.data)
        for secret in ("ann@example.com", "192.0.2.7", "Ann"):
            assert secret not in text, f"{secret} is in the MAC'd data of {event.action}"
    assert events["console.user_created"].data == {"role": "admin"}
    assert events["console.user_created"].personal == {"email": "ann@example.com"}
    assert events["console.login_failed"].actor_ip == "192.0.2.7"
    with store.database.write() as conn:
        assert store.audit.erase_personal(conn, targets=[users.target_of(user)]) == 3
    assert store.audit.verify().ok


SECRET_HOOK = "https://hooks.example.com/services/T0/B0/s3cr3t-token-one"
OTHER_HOOK = "https://hooks.example.com/services/T0/B0/s3cr3t-token-two"


def test_an_apps_webhook_url_secret_stays_out_of_the_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook URL often carries its secret in the path (a chat service's incoming hook):
    the audit log, which no one can edit and every ``audit:read`` key reads, records its
    origin and a digest, and still records that it changed."""
    # the destination rule resolves the host (webhooks/ssrf.py): stubbed, never the network
    monkeypatch.setattr(ssrf, "resolve", stub_resolver({"hooks.example.com": ["93.184.215.14"]}))
    made = make_issuer(tmp_path)
    try:
        app = made.post(
            "/v1/apps", {"name": "Hooked", "webhookUrl": SECRET_HOOK}, headers=made.auth()
        )
        app_id = app.get_json()["id"]
        response = made.client.patch(
            f"/v1/apps/{app_id}", json={"webhookUrl": OTHER_HOOK}, headers=made.auth()
        )
        assert response.status_code == 200, response.get_json()
        events = {e.action: e for e in made.store.audit.list()}
        for action in ("app.create", "app.update"):
            assert "s3cr3t" not in repr(events[action].data), events[action].data
        before, after = events["app.update"].data["changes"]["webhook_url"]
        assert before != after and before.startswith("https://hooks.example.com")
    finally:
        close_issuer(made)
