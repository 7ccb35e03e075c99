"""A data subject's rights, on SQLite and PostgreSQL: ``POST /v1/customers/export`` and
``/erase`` (scopes ``customers:read`` / ``customers:erase``, app restriction applied) and
``flask licensechain customers export|erase``. After an erasure no table and no exported
record holds the customer's e-mail, name, IP or user agent; the license facts remain and
the license keeps working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain.store import Actor, Change
from flask_licensechain.store.retention import RETAINED, register_retention
from flask_licensechain.store.schema import UTCDateTime, metadata

EMAIL = "Ann.Example@Example.test"
NAME = "Ann Example"
IP = "203.0.113.77"
AGENT = "AnnsClient/4.2 (hostname ann-laptop)"
PHONE = "+33 6 12 34 56 78"

visits = sa.Table(
    "lc_test_customer_visits",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("license_id", sa.String(40)),
    sa.Column("ip", sa.Text),
    sa.Column("user_agent", sa.Text),
    sa.Column("seen_at", UTCDateTime, nullable=False),
)


@pytest.fixture(params=["sqlite", "postgres"])
def issuer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Issuer]:
    entry = register_retention(
        visits,
        timestamp="seen_at",
        ips=("ip",),
        user_agents=("user_agent",),
        license_id="license_id",
    )
    url = f"sqlite:///{tmp_path / 'cust.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    made = make_issuer(tmp_path, url, personal_metadata_keys="phone", webhooks_allow_private=True)
    with made.store.engine.begin() as conn:
        visits.create(conn)
    try:
        yield made
    finally:
        close_issuer(made)
        RETAINED.remove(entry)


class World:
    def __init__(self, issuer: Issuer) -> None:
        self.app_a = issuer.new_app(name="App A")
        self.app_b = issuer.new_app(name="App B")
        hook = {"url": "http://127.0.0.1:9/hook"}  # never sent: no worker runs here
        assert (
            issuer.client.post("/v1/webhooks", json=hook, headers=issuer.auth()).status_code == 201
        )
        create = issuer.store.licenses.create
        self.ann_a = create(
            self.app_a.id,
            plan="pro",
            issued_email=EMAIL,
            issued_to=NAME,
            features=["export"],
            metadata={"phone": PHONE, "seat": 3},
            max_devices=2,
        )
        self.ann_a2 = create(self.app_a.id, plan="basic", issued_email=EMAIL.lower())
        self.ann_b = create(self.app_b.id, plan="team", issued_email=f"  {EMAIL.upper()} ")
        self.bob = create(
            self.app_a.id, plan="pro", issued_email="bob@example.test", issued_to="Bob"
        )
        self.token = issuer.token_for(self.ann_a.key, hwuid="ann-machine")
        # webhook deliveries whose payload holds the license JSON: e-mail, name, phone
        with issuer.store.unit_of_work(Actor(kind="cli", id="t")) as unit:
            for lic in (self.ann_a, self.ann_b, self.bob):
                unit.record(
                    Change(action="license.create", target=lic.id, app_id=lic.app_id, subject=lic)
                )
        with issuer.store.engine.begin() as conn:
            conn.execute(
                sa.insert(visits),
                [
                    {
                        "id": 1,
                        "license_id": self.ann_a.id,
                        "ip": IP,
                        "user_agent": AGENT,
                        "seen_at": datetime.now(UTC),
                    },
                    {
                        "id": 2,
                        "license_id": self.bob.id,
                        "ip": "198.51.100.5",
                        "user_agent": "BobClient",
                        "seen_at": datetime.now(UTC),
                    },
                ],
            )
        support = Actor(kind="system", id="support", ip=IP, user_agent=AGENT)
        with issuer.store.unit_of_work(support) as unit:
            unit.record(
                Change(action="test.note", personal={"note": f"call {EMAIL} back", "name": NAME})
            )


def post(issuer: Issuer, path: str, key: str, body: Any) -> Any:
    return issuer.client.post(path, json=body, headers=issuer.auth(key))


def everything(issuer: Issuer) -> str:
    """Every value of every table, LicenseChain's and the registered test table, as text."""
    chunks = []
    with issuer.store.engine.connect() as conn:
        for table in [*metadata.sorted_tables, visits]:
            for row in conn.execute(sa.select(table)):
                chunks.append(json.dumps([str(v) for v in row], ensure_ascii=False))
    return "\n".join(chunks).lower()


def test_export_holds_every_record_about_the_customer(issuer: Issuer) -> None:
    world = World(issuer)
    reader = issuer.api_key("customers:read")
    response = post(issuer, "/v1/customers/export", reader, {"email": "ann.example@example.TEST"})
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    doc = response.get_json()
    assert doc["format"] == "licensechain.customer-export" and doc["version"] == 1
    ids = [lic["id"] for lic in doc["licenses"]]
    assert sorted(ids) == sorted([world.ann_a.id, world.ann_a2.id, world.ann_b.id])
    first = next(lic for lic in doc["licenses"] if lic["id"] == world.ann_a.id)
    assert first["issuedTo"] == NAME and first["metadata"]["phone"] == PHONE
    assert [d["hwuid"] for d in first["devices"]] == ["ann-machine"]
    rows = doc["verificationMetadata"]["lc_test_customer_visits"]
    assert [(r["ip"], r["user_agent"]) for r in rows] == [(IP, AGENT)]
    actions = [e["action"] for e in doc["auditEvents"]]
    assert "test.note" in actions
    hooks = doc["webhookDeliveries"]
    assert {d["payload"]["data"]["id"] for d in hooks} == {world.ann_a.id, world.ann_b.id}
    created = [d for d in hooks if d["eventType"] == "license.created"]
    assert {d["payload"]["data"]["issuedTo"] for d in created} == {NAME, None}
    assert "bob@example.test" not in json.dumps(doc)
    # the export is an audit event that does not name the e-mail
    last = issuer.store.audit.list(limit=1)[0]
    assert last.action == "customer.export" and last.target.startswith("erased-")
    assert "example.test" not in json.dumps([last.target, last.data]).lower()


def test_an_app_limited_key_exports_its_app_only(issuer: Issuer) -> None:
    world = World(issuer)
    _, limited = issuer.store.api_keys.create(
        "app A support", ["customers:read"], app_id=world.app_a.id
    )
    doc = post(issuer, "/v1/customers/export", limited, {"email": EMAIL}).get_json()
    assert sorted(lic["id"] for lic in doc["licenses"]) == sorted([world.ann_a.id, world.ann_a2.id])
    assert doc["appId"] == world.app_a.id
    assert "test.note" not in [e["action"] for e in doc["auditEvents"]]  # not about its app
    assert {d["appId"] for d in doc["webhookDeliveries"]} == {world.app_a.id}


@pytest.mark.parametrize(
    ("path", "scopes", "body", "status", "code"),
    [
        ("/v1/customers/export", ["licenses:read"], {"email": EMAIL}, 403, "insufficient_scope"),
        ("/v1/customers/erase", ["customers:read"], {"email": EMAIL}, 403, "insufficient_scope"),
        ("/v1/customers/export", ["customers:read"], {}, 400, "invalid_request"),
        ("/v1/customers/erase", ["customers:erase"], {"email": ""}, 400, "invalid_request"),
        ("/v1/customers/erase", ["customers:erase"], {"email": 7}, 400, "invalid_request"),
        (
            "/v1/customers/export",
            ["customers:read"],
            {"email": EMAIL, "x": 1},
            400,
            "invalid_request",
        ),
        ("/v1/customers/export", ["customers:read"], ["not", "an object"], 400, "invalid_request"),
    ],
)
def test_refusals(
    issuer: Issuer, path: str, scopes: list[str], body: Any, status: int, code: str
) -> None:
    World(issuer)
    before = issuer.snapshot()
    response = post(issuer, path, issuer.api_key(*scopes), body)
    assert response.status_code == status and response.get_json()["error"] == code
    assert issuer.client.post(path, json={"email": EMAIL}).status_code == 401
    after = issuer.snapshot()
    after.pop("lc_api_keys"), before.pop("lc_api_keys")
    assert after == before  # nothing erased, nothing recorded


def test_erasure_leaves_no_personal_data_and_keeps_the_facts(issuer: Issuer) -> None:
    world = World(issuer)
    assert EMAIL.lower() in everything(issuer)  # the search below can find it
    with issuer.store.engine.connect() as conn:  # ... in the webhook deliveries too
        payloads = [
            p for (p,) in conn.execute(sa.text("SELECT payload FROM lc_webhook_deliveries"))
        ]
    assert any(NAME in p and PHONE in p for p in payloads) and any("Bob" in p for p in payloads)
    eraser = issuer.api_key("customers:erase")
    response = post(issuer, "/v1/customers/erase", eraser, {"email": EMAIL})
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["erased"] is True and result["licenses"] == 3
    assert result["personalRows"] == 1 and result["auditEvents"] >= 1
    assert result["webhookDeliveries"] >= 2
    assert issuer.store.audit.verify().ok  # the chain still verifies

    stored = everything(issuer)
    for personal in (EMAIL, NAME, IP, AGENT, PHONE, "ann.example", "ann-machine"):
        assert personal.lower() not in stored, personal
    reader = issuer.api_key("customers:read")
    doc = post(issuer, "/v1/customers/export", reader, {"email": EMAIL}).get_json()
    records = json.dumps({k: v for k, v in doc.items() if k != "subject"}).lower()
    for personal in (EMAIL, NAME, IP, AGENT, PHONE, "ann-machine"):
        assert personal.lower() not in records, personal
    assert doc["licenses"] == []

    # the facts a seller needs are kept, and the license still works
    kept = issuer.store.licenses.get(world.ann_a.id)
    assert (kept.plan, kept.status, list(kept.features)) == ("pro", "ACTIVE", ["export"])
    assert kept.metadata == {"seat": 3}
    assert kept.issued_email == result["pseudonym"] and kept.issued_to is None
    # the hardware id is a keyed pseudonym; the device still holds its slot
    (device,) = kept.devices
    assert device.hwuid.startswith("erased-") and device.hwuid != result["pseudonym"]
    assert result["devices"] == 1
    assert issuer.introspect(world.token)["active"] is True
    # the device is no longer recognised: it takes the second (last) slot, then none is left
    assert issuer.verify(key=world.ann_a.key, hwuid="ann-machine").get_json()["valid"] is True
    assert len(issuer.store.licenses.get(world.ann_a.id).devices) == 2
    assert issuer.verify(key=world.ann_a.key, hwuid="other-machine").get_json()["valid"] is False
    # Bob is untouched
    bob = issuer.store.licenses.get(world.bob.id)
    assert (bob.issued_email, bob.issued_to) == ("bob@example.test", "Bob")
    assert "198.51.100.5" in stored and "bobclient" in stored
    # the erasure is an audit event without the personal data
    event = next(e for e in issuer.store.audit.list(limit=10) if e.action == "customer.erase")
    assert event.target == result["pseudonym"]
    keys = ("licenses", "personalRows", "auditEvents", "webhookDeliveries", "devices")
    assert event.data == {k: result[k] for k in keys}
    # the same e-mail always gives the same pseudonym; a second erasure finds nothing
    again = post(issuer, "/v1/customers/erase", eraser, {"email": EMAIL.upper()}).get_json()
    assert again["pseudonym"] == result["pseudonym"] and again["licenses"] == 0


def test_an_app_limited_erasure_stays_in_its_app(issuer: Issuer) -> None:
    world = World(issuer)
    _, limited = issuer.store.api_keys.create(
        "app B support", ["customers:erase"], app_id=world.app_b.id
    )
    result = post(issuer, "/v1/customers/erase", limited, {"email": EMAIL}).get_json()
    assert result["licenses"] == 1
    assert issuer.store.licenses.get(world.ann_b.id).issued_email.startswith("erased-")
    assert issuer.store.licenses.get(world.ann_a.id).issued_email == EMAIL


def cli(issuer: Issuer, *args: str) -> Any:
    return issuer.app.test_cli_runner().invoke(args=["licensechain", "customers", *args])


def test_the_cli_exports_and_erases(issuer: Issuer) -> None:
    world = World(issuer)
    exported = cli(issuer, "export", "--email", EMAIL, "--json")
    assert exported.exit_code == 0, exported.output
    doc = json.loads(exported.stdout)
    assert len(doc["licenses"]) == 3 and doc["format"] == "licensechain.customer-export"
    limited = json.loads(
        cli(issuer, "export", "--email", EMAIL, "--app-id", world.app_b.id, "--json").stdout
    )
    assert [lic["id"] for lic in limited["licenses"]] == [world.ann_b.id]

    unconfirmed = cli(issuer, "erase", "--email", EMAIL, "--json")
    assert unconfirmed.exit_code == 2 and "--yes" in json.loads(unconfirmed.stdout)["message"]
    assert issuer.store.licenses.get(world.ann_a.id).issued_email == EMAIL

    erased = cli(issuer, "erase", "--email", EMAIL, "--yes", "--json")
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.stdout)["licenses"] == 3
    assert EMAIL.lower() not in everything(issuer)
    event = issuer.store.audit.list(limit=1)[0]
    assert event.action == "customer.erase" and event.actor not in (None, "")


@pytest.mark.parametrize(
    "email", [" ", "\t", "a", "example.test", "@", "ann@", "@example.test", "a b@x.test", "a@b@c"]
)
@pytest.mark.parametrize("path", ["/v1/customers/export", "/v1/customers/erase"])
def test_only_a_whole_address_names_a_customer(issuer: Issuer, path: str, email: str) -> None:
    """A blank or partial address would match every record holding it as text: 400, and
    nothing read, erased or recorded."""
    World(issuer)
    before = issuer.snapshot()
    key = issuer.api_key("customers:read", "customers:erase")
    response = post(issuer, path, key, {"email": email})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_request"
    after = issuer.snapshot()
    after.pop("lc_api_keys"), before.pop("lc_api_keys")
    assert after == before


def test_another_address_holding_the_email_is_left_alone(issuer: Issuer) -> None:
    """``ann.example@example.test`` is not ``joann.example@example.test`` nor
    ``ann.example@example.test.au``: their licenses, audit events and deliveries keep
    every personal value."""
    World(issuer)
    others = [f"jo{EMAIL}".lower(), f"{EMAIL}.au".lower(), f"x.{EMAIL}".lower()]
    for other in others:
        issuer.store.licenses.create(
            issuer.new_app(name=f"App {other}").id, plan="pro", issued_email=other
        )
        support = Actor(kind="system", id="support", ip="192.0.2.9", user_agent="Other/1")
        with issuer.store.unit_of_work(support) as unit:
            unit.record(Change(action="test.note", personal={"note": f"call {other}"}))
    key = issuer.api_key("customers:read", "customers:erase")
    doc = post(issuer, "/v1/customers/export", key, {"email": EMAIL}).get_json()
    exported = json.dumps(doc).lower()
    for other in others:
        assert other not in exported, other
    result = post(issuer, "/v1/customers/erase", key, {"email": EMAIL}).get_json()
    assert result["licenses"] == 3
    stored = everything(issuer)
    for other in others:
        assert stored.count(other) >= 2, other  # the license and the audit note
    assert "192.0.2.9" in stored and "other/1" in stored
    assert issuer.store.audit.verify().ok


def test_console_sign_in_failures_with_the_address_are_exported_and_erased(
    issuer: Issuer,
) -> None:
    """Someone typed the customer's address into the console's sign-in form: the failure
    row (address and IP) is the customer's data too, in a whole-store export and erasure."""
    from flask_licensechain.console.repository import ConsoleRepository

    World(issuer)
    failures = ConsoleRepository(issuer.store.database)
    failures.record_failure(f" {EMAIL.upper()}", "192.0.2.44", datetime.now(UTC))
    failures.record_failure("bob@example.test", "192.0.2.45", datetime.now(UTC))
    key = issuer.api_key("customers:read", "customers:erase")
    doc = post(issuer, "/v1/customers/export", key, {"email": EMAIL}).get_json()
    rows = doc["verificationMetadata"]["lc_console_login_failures"]
    assert [row["ip"] for row in rows] == ["192.0.2.44"]
    assert "lc_console_login_failures" in doc["sources"]
    result = post(issuer, "/v1/customers/erase", key, {"email": EMAIL}).get_json()
    assert result.get("erased") is True, result
    stored = everything(issuer)
    assert EMAIL.lower() not in stored and "192.0.2.44" not in stored
    assert "bob@example.test" in stored and "192.0.2.45" in stored
    with issuer.store.engine.connect() as conn:
        emails = conn.execute(sa.text("SELECT email FROM lc_console_login_failures")).scalars()
        assert sorted(emails) == sorted(["bob@example.test", result["pseudonym"]])


def test_the_cli_refuses_a_partial_address(issuer: Issuer) -> None:
    World(issuer)
    before = issuer.snapshot()
    for command in (["export", "--email", "example.test"], ["erase", "--email", " ", "--yes"]):
        result = cli(issuer, *command)
        assert result.exit_code == 1, result.output  # InvalidRequest, as every command
        assert "e-mail address" in result.output
    assert issuer.snapshot() == before
