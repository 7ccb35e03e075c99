"""Attacks on the data-protection promises (README "Data protection"): customer export and
erasure, retention, backup and restore, encryption-key rotation. Each test here is a
finding: it failed on the code it was written against (branch attack15)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from issuer_support import Issuer, close_issuer, make_issuer

from flask_licensechain.maintenance import run_maintenance
from flask_licensechain.store import Actor, Change
from flask_licensechain.store.schema import metadata

ANN = "ann@example.test"


@pytest.fixture(params=["sqlite", "postgres"])
def issuer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Issuer]:
    url = f"sqlite:///{tmp_path / 'attack.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    made = make_issuer(tmp_path, url, personal_metadata_keys="phone", webhooks_allow_private=True)
    hook = {"url": "http://127.0.0.1:9/hook"}  # never sent: no worker runs here
    assert made.client.post("/v1/webhooks", json=hook, headers=made.auth()).status_code == 201
    try:
        yield made
    finally:
        close_issuer(made)


def everything(issuer: Issuer) -> str:
    """Every value of every LicenseChain table as text, lower-cased; JSON columns as their
    Python values, so a ``\\u`` escape in the stored text does not hide a value."""
    chunks = []
    with issuer.store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                chunks.append(json.dumps([str(v) for v in row], ensure_ascii=False))
    return "\n".join(chunks).lower()


def create(issuer: Issuer, app_id: str, **body: Any) -> dict[str, Any]:
    response = issuer.client.post(
        f"/v1/apps/{app_id}/licenses", json={"plan": "pro", **body}, headers=issuer.auth()
    )
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def post(issuer: Issuer, path: str, body: Any) -> Any:
    key = issuer.api_key("customers:read", "customers:erase")
    return issuer.client.post(path, json=body, headers=issuer.auth(key))


def payloads(issuer: Issuer) -> list[str]:
    with issuer.store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT payload FROM lc_webhook_deliveries ORDER BY id"))
        return [p for (p,) in rows]


# -- export and erasure -----------------------------------------------------------------


@pytest.mark.parametrize("stored", [f"{ANN}\n", f"\t{ANN}", f"{ANN}\r\n"])
def test_a_license_whose_email_has_surrounding_white_space_is_exported_and_erased(
    issuer: Issuer, stored: str
) -> None:
    """README: licenses are matched to the e-mail "compared trimmed, case-insensitively".
    A license created through the API with a trailing newline or a leading tab (a pasted
    address) is the customer's, but SQL ``trim`` strips spaces only."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=stored, issuedTo="Ann Example")
    doc = post(issuer, "/v1/customers/export", {"email": ANN}).get_json()
    assert len(doc["licenses"]) == 1, doc
    result = post(issuer, "/v1/customers/erase", {"email": ANN}).get_json()
    assert result["licenses"] == 1, result
    assert "ann example" not in everything(issuer)


@pytest.mark.parametrize(
    "email",
    ["ÄNN@example.test", "Émile@example.test", "İlker@example.test", "İNES@example.test"],
)
def test_a_non_ascii_address_is_matched_case_insensitively(issuer: Issuer, email: str) -> None:
    """An internationalised address (RFC 6531) stored with a capital non-ASCII letter: the
    customer gives the very same address. SQL lower-cases ASCII only on SQLite, and
    PostgreSQL's ``lower()`` turns ``İ`` (U+0130, Turkish names) into ``i`` where Python
    gives ``i`` + U+0307: no license was found, the erasure reported success and left the
    e-mail and the name."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=email, issuedTo="Ann Example")
    doc = post(issuer, "/v1/customers/export", {"email": email}).get_json()
    assert len(doc["licenses"]) == 1, doc
    result = post(issuer, "/v1/customers/erase", {"email": email}).get_json()
    assert result["licenses"] == 1, result
    stored = everything(issuer)
    assert email.lower() not in stored and "ann example" not in stored


def test_a_non_ascii_address_in_an_audit_note_is_exported_and_erased(issuer: Issuer) -> None:
    """README: the audit events "naming the e-mail" are exported and their personal columns
    blanked. The personal JSON is stored with ``\\u`` escapes (SQLAlchemy's default
    ``json.dumps``), so the SQL prefilter never finds ``jörg@example.test`` in it."""
    email = "jörg@example.test"
    support = Actor(kind="system", id="support", ip="192.0.2.7", user_agent="Support/1")
    with issuer.store.unit_of_work(support) as unit:
        unit.record(Change(action="test.note", personal={"note": f"call {email} back"}))
    doc = post(issuer, "/v1/customers/export", {"email": email}).get_json()
    assert "test.note" in [e["action"] for e in doc["auditEvents"]], doc
    post(issuer, "/v1/customers/erase", {"email": email})
    stored = everything(issuer)
    assert email not in stored and "192.0.2.7" not in stored
    assert issuer.store.audit.verify().ok


def test_a_lookalike_address_with_a_non_ascii_local_part_is_left_alone(issuer: Issuer) -> None:
    """``jöann@example.test`` is another customer than ``ann@example.test`` (README: "records
    match it as a whole address, never inside a longer one"). The whole-address boundary
    knows ASCII atext only, so ``ö`` counts as a boundary: Ann's export holds Jöann's
    license payload (name, e-mail) and Ann's erasure rewrites Jöann's deliveries."""
    other = "jöann@example.test"
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=other, issuedTo="Jo Other", metadata={"phone": "+1 555"})
    before = payloads(issuer)
    assert any("Jo Other" in p for p in before)
    doc = post(issuer, "/v1/customers/export", {"email": ANN}).get_json()
    exported = json.dumps(doc, ensure_ascii=False)
    assert "Jo Other" not in exported and other not in exported
    result = post(issuer, "/v1/customers/erase", {"email": ANN}).get_json()
    assert result["webhookDeliveries"] == 0, result
    assert payloads(issuer) == before


def test_another_customers_delivery_mentioning_the_address_keeps_its_data(
    issuer: Issuer,
) -> None:
    """Bob's license names Ann as his referrer. Erasing Ann must pseudonymise Ann's address
    in Bob's delivery, not null Bob's own name and drop Bob's phone (README: the payloads
    "of the webhook deliveries about them")."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    bob = create(
        issuer,
        app.id,
        issuedEmail="bob@example.test",
        issuedTo="Bob Builder",
        metadata={"referrer": ANN, "phone": "+1 555 0100"},
    )
    post(issuer, "/v1/customers/erase", {"email": ANN})
    bobs = [p for p in payloads(issuer) if bob["id"] in p]
    assert bobs
    for payload in bobs:
        data = json.loads(payload)["data"]
        assert data["issuedTo"] == "Bob Builder", data
        assert data["metadata"].get("phone") == "+1 555 0100", data
        assert ANN not in payload


def test_a_hardware_id_that_looks_like_a_pseudonym_is_pseudonymised(issuer: Issuer) -> None:
    """README: "each bound device's hardware id becomes a keyed pseudonym". The hardware id
    is chosen by the client; one that starts with ``erased-`` (say ``erased-`` + the
    serial number) is skipped as "already erased" and stays stored as sent."""
    app = issuer.new_app()
    lic = create(issuer, app.id, issuedEmail=ANN)
    hwuid = "erased-SERIAL-C02XK1ABJGH5-ann-macbook"
    issuer.token_for(lic["key"], hwuid=hwuid)
    result = post(issuer, "/v1/customers/erase", {"email": ANN}).get_json()
    assert result["devices"] == 1, result
    assert "c02xk1abjgh5" not in everything(issuer)


# -- retention ---------------------------------------------------------------------------


def test_the_last_ip_of_an_api_key_is_reduced_by_retention(issuer: Issuer) -> None:
    """README: "Client IP addresses ... are kept only where a table registers them for
    retention" and "API keys ... store no IP". ``lc_api_keys.last_used_ip`` holds the
    client IP of the key's last request, is not registered, and stays whole for ever."""
    key = issuer.api_key("apps:read")
    response = issuer.client.get(
        "/v1/apps", headers=issuer.auth(key), environ_base={"REMOTE_ADDR": "198.51.100.23"}
    )
    assert response.status_code == 200
    issuer.store.api_keys.usage.flush()
    later = datetime.now(UTC) + timedelta(days=issuer.state.settings.retention_days_ip + 30)
    run_maintenance(issuer.state, now=later)
    with issuer.store.engine.connect() as conn:
        ips = conn.execute(sa.text("SELECT last_used_ip FROM lc_api_keys")).scalars().all()
    assert "198.51.100.23" not in ips, ips


# -- backup and restore ------------------------------------------------------------------


def test_a_released_device_leaves_no_hardware_id_behind(issuer: Issuer) -> None:
    """README: hardware ids are personal data; erasure pseudonymises "hardware ids" in the
    delivery payloads. A device released before the erasure is no longer bound, so its id
    is not in the erasure's map: the ``device.released`` delivery keeps it as sent."""
    app = issuer.new_app()
    lic = create(issuer, app.id, issuedEmail=ANN, maxDevices=2)
    hwuid = "ann-laptop-serial-C02XK1ABJGH5"
    issuer.token_for(lic["key"], hwuid=hwuid)
    released = issuer.client.delete(
        f"/v1/licenses/{lic['id']}/devices", query_string={"hwuid": hwuid}, headers=issuer.auth()
    )
    assert released.status_code == 200, released.get_json()
    assert any(hwuid in p for p in payloads(issuer))
    post(issuer, "/v1/customers/erase", {"email": ANN})
    stored = everything(issuer)
    assert hwuid.lower() not in stored, [p for p in payloads(issuer) if hwuid in p]


@pytest.mark.parametrize("issuer", ["sqlite"], indirect=True)
def test_a_customer_with_very_many_licenses_can_be_erased(issuer: Issuer) -> None:
    """A volume customer holding 33,000 licenses (bulk seats). ``erase`` binds every license
    id into single ``IN`` lists (devices, retention rows, audit events), over SQLite's
    32,766 host parameters: "too many SQL variables" becomes a 503 "temporarily
    unavailable", and the customer can never be erased. (``_batches`` exists for the audit
    ids only.) On PostgreSQL the same happens past 65,535 licenses (psycopg's limit),
    reproduced by hand."""
    from flask_licensechain.store.schema import licenses

    first = issuer.new_license(issuer.new_app().id, issued_email=ANN, issued_to="Ann Example")
    with issuer.store.engine.begin() as conn:
        row = dict(conn.execute(sa.select(licenses)).mappings().one())
        bulk = [{**row, "id": f"lic_bulk{i:08d}", "key": f"LC-BULK-{i:08d}"} for i in range(33_000)]
        conn.execute(sa.insert(licenses), bulk)
    response = post(issuer, "/v1/customers/erase", {"email": ANN})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["licenses"] == 33_001
    assert issuer.store.licenses.get(first.id).issued_to is None


def test_the_records_of_a_deleted_apps_licenses_are_erased(issuer: Issuer) -> None:
    """Ann's license belonged to an app the seller since deleted (its revoked licenses go
    with it). Her verification left audit events (``device.bind``: her IP, user agent and
    hardware id) and deliveries. The erasure finds licenses by their e-mail only; with the
    license row gone, the events about it that do not spell the e-mail keep her IP, user
    agent and hardware id."""
    app = issuer.new_app()
    lic = create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    hwuid = "ann-desktop-serial-7Q2W9E"
    verified = issuer.client.post(
        "/v1/licenses/verify",
        json={"key": lic["key"], "hwuid": hwuid},
        environ_base={"REMOTE_ADDR": "203.0.113.99"},
        headers={"User-Agent": "AnnsClient/9.9 (host ann-desktop)"},
    )
    assert verified.get_json()["valid"] is True
    revoked = issuer.client.patch(f"/v1/licenses/{lic['id']}/revoke", headers=issuer.auth())
    assert revoked.status_code == 200
    stored = everything(issuer)
    assert "203.0.113.99" in stored and hwuid.lower() in stored
    deleted = issuer.client.delete(f"/v1/apps/{app.id}", headers=issuer.auth())
    assert deleted.status_code in (200, 204), deleted.get_json()
    # deleting the app already drops the personal columns of its licenses' events
    assert "203.0.113.99" not in everything(issuer)
    assert issuer.store.audit.verify().ok
    post(issuer, "/v1/customers/erase", {"email": ANN})
    stored = everything(issuer)
    for personal in ("203.0.113.99", "annsclient/9.9", hwuid.lower(), ANN, "ann example"):
        assert personal not in stored, personal


def test_an_export_does_not_disclose_another_customers_data(issuer: Issuer) -> None:
    """Bob's license names Ann as his referrer. Ann's export includes every delivery whose
    payload "mentions the e-mail", as sent: Bob's name, e-mail and phone go to Ann (a
    right of access must not disclose others' data, GDPR Art. 15(4)). README documents
    the payload "as sent", so this is a design finding: the delivery should be exported
    redacted to Ann's own values, or left out."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    create(
        issuer,
        app.id,
        issuedEmail="bob@example.test",
        issuedTo="Bob Builder",
        metadata={"referrer": ANN, "phone": "+1 555 0100"},
    )
    doc = post(issuer, "/v1/customers/export", {"email": ANN}).get_json()
    exported = json.dumps(doc)
    for other in ("bob@example.test", "Bob Builder", "+1 555 0100"):
        assert other not in exported, other


def test_the_address_in_another_licenses_metadata_is_erased(issuer: Issuer) -> None:
    """Ann is the billing contact named in the metadata of her company's license (issued
    to ``it@corp.test``). Erasure rewrites her address inside the deliveries about that
    license, but not in the license itself: the store keeps it, and the next
    ``license.updated`` delivery sends it again (tests/test_customers.py: "After an
    erasure no table ... holds the customer's e-mail")."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    corp = create(issuer, app.id, issuedEmail="it@corp.test", metadata={"billingContact": ANN})
    result = post(issuer, "/v1/customers/erase", {"email": ANN}).get_json()
    assert result["erased"] is True
    kept = issuer.store.licenses.get(corp["id"])
    assert ANN not in json.dumps(kept.metadata), kept.metadata
    assert ANN not in everything(issuer)


# -- encryption-key rotation ---------------------------------------------------------------


def test_a_second_erasure_after_the_device_came_back_succeeds(issuer: Issuer) -> None:
    """README: after an erasure "the real device is no longer recognised and is bound anew,
    in a free slot, when it verifies again". Erasing the customer again (a second request,
    or the license reissued to the same address) gives that hardware id the same keyed
    pseudonym, which the license's first slot already holds: the device's primary key
    (license, hwuid) collides and the erasure fails instead of completing."""
    app = issuer.new_app()
    lic = create(issuer, app.id, issuedEmail=ANN, maxDevices=3)
    issuer.token_for(lic["key"], hwuid="ann-machine-serial-42")
    first = post(issuer, "/v1/customers/erase", {"email": ANN})
    assert first.status_code == 200 and first.get_json()["devices"] == 1
    issuer.token_for(lic["key"], hwuid="ann-machine-serial-42")  # bound anew
    patched = issuer.client.patch(
        f"/v1/licenses/{lic['id']}", json={"issuedEmail": ANN}, headers=issuer.auth()
    )
    assert patched.status_code == 200, patched.get_json()
    second = post(issuer, "/v1/customers/erase", {"email": ANN})
    assert second.status_code == 200, second.get_json()
    assert "ann-machine-serial-42" not in everything(issuer)


def test_the_api_can_erase_everything_once_a_test_app_exists(issuer: Issuer) -> None:
    """README: ``POST /v1/customers/erase {"email"}`` blanks the audit events naming the
    e-mail and the failed console sign-ins typed with it. Once the seller has one test
    app, the admin key (every app, no restriction) must name an app (400 otherwise), and
    an app-scoped erasure skips the events that only mention the e-mail and the sign-in
    failures: no API call erases them."""
    from flask_licensechain.console.repository import ConsoleRepository

    live = issuer.new_app(name="Live")
    issuer.store.apps.create("Sandbox", mode="test")
    create(issuer, live.id, issuedEmail=ANN, issuedTo="Ann Example")
    support = Actor(kind="system", id="support", ip="192.0.2.8", user_agent="Support/2")
    with issuer.store.unit_of_work(support) as unit:
        unit.record(Change(action="test.note", personal={"note": f"call {ANN} back"}))
    ConsoleRepository(issuer.store.database).record_failure(ANN, "192.0.2.45", datetime.now(UTC))
    eraser = issuer.api_key("customers:erase")
    whole = issuer.client.post(
        "/v1/customers/erase", json={"email": ANN}, headers=issuer.auth(eraser)
    )
    if whole.status_code != 200:  # the documented fallback: one app at a time
        for app in issuer.store.apps.list():
            issuer.client.post(
                "/v1/customers/erase",
                json={"email": ANN, "appId": app.id},
                headers=issuer.auth(eraser),
            )
    stored = everything(issuer)
    assert ANN not in stored and "192.0.2.45" not in stored


# -- second round (branch attack2) ------------------------------------------------------

BOB = "bob@example.test"


@pytest.mark.parametrize("issuer", ["sqlite"], indirect=True)  # PostgreSQL's ILIKE folds it
def test_an_address_folding_to_the_customers_is_hers(issuer: Issuer) -> None:
    """The module's rule: licenses are matched by Python's ``lower()``, SQL only
    pre-filters on the address's longest ASCII run. ``"\\u212aate@..."`` (KELVIN SIGN)
    lower-cases to ``kate@...``, so Python says it is Kate's license, but the ASCII run
    ``kate@example.test`` is not in the stored text: not exported, not erased."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail="\u212aATE@example.test", issuedTo="Kate Example")
    doc = post(issuer, "/v1/customers/export", {"email": "kate@example.test"}).get_json()
    assert len(doc["licenses"]) == 1, doc
    result = post(issuer, "/v1/customers/erase", {"email": "kate@example.test"}).get_json()
    assert result["licenses"] == 1, result
    assert "kate example" not in everything(issuer)


@pytest.mark.parametrize("data_id", [["lic_x"], {"id": "lic_x"}])
def test_a_delivery_whose_data_id_is_not_text_does_not_break_export(
    issuer: Issuer, data_id: Any
) -> None:
    """A delivery payload (a legacy row, or one written by another version) whose
    ``data.id`` is a list or an object and which mentions the address: ``payload_is_about``
    asks ``data.get("id") in ids`` of a set, an unhashable value raises ``TypeError``, and
    export and erasure answer 500 instead of exporting and pseudonymising it."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    odd = json.dumps({"type": "license.created", "data": {"id": data_id, "note": ANN}})
    with issuer.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE lc_webhook_deliveries SET payload = :p"), {"p": odd})
    exported = post(issuer, "/v1/customers/export", {"email": ANN})
    assert exported.status_code == 200, exported.status_code
    erased = post(issuer, "/v1/customers/erase", {"email": ANN})
    assert erased.status_code == 200, erased.status_code
    assert ANN not in everything(issuer)


def test_an_address_in_another_licenses_email_field_is_erased(issuer: Issuer) -> None:
    """A license shared by two people, issued to ``"ann@example.test, bob@example.test"``
    (the API takes any text as ``issuedEmail``). It is not Ann's license (not one whole
    address), and ``_erase_mentions_in_licenses`` rewrites her address in other licenses'
    metadata and name only: her e-mail stays in its ``issued_email`` and goes out again in
    the next ``license.updated`` delivery."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    shared = create(issuer, app.id, issuedEmail=f"{ANN}, {BOB}")
    result = post(issuer, "/v1/customers/erase", {"email": ANN})
    assert result.status_code == 200, result.get_json()
    kept = issuer.store.licenses.get(shared["id"])
    assert ANN not in (kept.issued_email or ""), kept.issued_email
    assert ANN not in everything(issuer)


def test_an_export_of_a_mention_in_event_data_discloses_no_one_else(issuer: Issuer) -> None:
    """Bob's license is revoked with a reason naming Bob and Ann. Ann's export includes the
    ``license.revoke`` event because its data mentions her, but exports that data whole
    (``_event_json`` trims only ``personal``): Bob's e-mail goes to Ann (GDPR Art. 15(4))."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    bob = create(issuer, app.id, issuedEmail=BOB, issuedTo="Bob Builder")
    revoked = issuer.client.patch(
        f"/v1/licenses/{bob['id']}/status",
        json={"status": "REVOKED", "reason": f"{BOB} shared his key with {ANN}"},
        headers=issuer.auth(),
    )
    assert revoked.status_code == 200, revoked.get_json()
    doc = post(issuer, "/v1/customers/export", {"email": ANN}).get_json()
    assert "license.revoke" in [e["action"] for e in doc["auditEvents"]], doc
    assert BOB not in json.dumps(doc, ensure_ascii=False)


def test_deeply_nested_metadata_is_refused_not_a_500(issuer: Issuer) -> None:
    """Metadata nested 500 objects deep (about 3 KB, under the body and metadata limits):
    the body parser takes it, then ``services.plain`` recurses once per level and raises
    ``RecursionError``: the license create answers 500 instead of 400 (or 201). The
    customer code's own walks (``_scrub``, ``mentioned``, ``_redact_license``) are just as
    recursive, so the depth limit belongs at the door."""
    app = issuer.new_app()
    meta: dict[str, Any] = {"referrer": ANN}
    for _ in range(500):
        meta = {"a": meta}
    made = issuer.client.post(
        f"/v1/apps/{app.id}/licenses",
        json={"plan": "pro", "issuedEmail": BOB, "metadata": meta},
        headers=issuer.auth(),
    )
    assert made.status_code in (201, 400), made.status_code


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/api-keys", {"name": "support", "scopes": ["licenses:read"]}),
        ("/v1/webhooks", {"url": "http://127.0.0.1:9/other"}),
    ],
)
def test_an_address_in_a_free_text_description_is_erased(
    issuer: Issuer, path: str, body: dict[str, Any]
) -> None:
    """The seller named the customer in a description (an API key made for her support
    case, a webhook endpoint for her integration). Erasure searches licenses, audit events,
    deliveries and the registered tables only: ``lc_api_keys.description`` and
    ``lc_webhook_endpoints.description`` keep her e-mail (tests/test_customers.py: after an
    erasure no table holds the customer's e-mail)."""
    app = issuer.new_app()
    create(issuer, app.id, issuedEmail=ANN, issuedTo="Ann Example")
    made = issuer.client.post(
        path, json={**body, "description": f"for {ANN}"}, headers=issuer.auth()
    )
    assert made.status_code == 201, made.get_json()
    result = post(issuer, "/v1/customers/erase", {"email": ANN})
    assert result.status_code == 200, result.get_json()
    assert ANN not in everything(issuer)


def test_a_reassigned_licenses_previous_holder_is_erased(issuer: Issuer) -> None:
    """Same move, then Bob asks for erasure through a key limited to the app. His e-mail,
    name and phone stay in the app's delivery payloads about the license that was his:
    the app-limited search only looks for payloads naming Bob's current licenses."""
    app = issuer.new_app()
    lic = create(
        issuer, app.id, issuedEmail=BOB, issuedTo="Bob Builder", metadata={"phone": "+1 555 0100"}
    )
    moved = issuer.client.patch(
        f"/v1/licenses/{lic['id']}",
        json={"issuedEmail": ANN, "issuedTo": "Ann Example", "metadata": {}},
        headers=issuer.auth(),
    )
    assert moved.status_code == 200, moved.get_json()
    result = post(issuer, "/v1/customers/erase", {"email": BOB, "appId": app.id})
    assert result.status_code == 200, result.get_json()
    stored = everything(issuer)
    for personal in (BOB, "bob builder", "+1 555 0100"):
        assert personal not in stored, personal
