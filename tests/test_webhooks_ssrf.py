"""Webhook destinations (issue 12, SSRF), with the development switch off: loopback,
IPv6 loopback, the metadata address, private and link-local addresses, and names that
resolve to them are refused at creation, and again at each delivery (DNS can change),
before any connection is opened. The resolver is stubbed; a socket guard fails the test if
a connection to any non-loopback address is even attempted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from issuer_support import Issuer, close_issuer, error_body, make_issuer
from webhooks_support import socket_guard, stub_resolver

from flask_licensechain.store import Actor, Change
from flask_licensechain.webhooks import ssrf
from flask_licensechain.webhooks.ssrf import DestinationPolicy, DestinationRefused
from flask_licensechain.webhooks.worker import Worker

#: what the stubbed DNS answers (public addresses of documentation ranges are not global,
#: so the "public" name uses an address outside them)
NAMES = {
    "hooks.example.com": ["93.184.215.14"],
    "internal.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.215.14", "192.168.1.5"],
    "metadata.example.com": ["169.254.169.254"],
    "v6.example.com": ["fd00:ec2::254"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
}


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    monkeypatch.setattr(ssrf, "resolve", stub_resolver(NAMES))
    with socket_guard() as attempts:
        yield attempts


@pytest.fixture
def strict(tmp_path: Path, guarded: list[Any]) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)  # LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE off (the default)
    try:
        yield made
    finally:
        close_issuer(made)


REFUSED = [
    "http://127.0.0.1:8080/hook",
    "https://127.0.0.1/hook",
    "https://127.1.2.3/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/hook",
    "https://172.16.5.4/hook",
    "https://192.168.0.1/hook",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[fe80::1]/hook",
    "https://[fd00:ec2::254]/hook",
    "https://224.0.0.1/hook",
    "https://internal.example.com/hook",
    "https://mixed.example.com/hook",
    "https://metadata.example.com/hook",
    "https://v6.example.com/hook",
    "https://mapped.example.com/hook",
    "https://nowhere.example.com/hook",
    "http://hooks.example.com/hook",  # not https
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_at_creation_before_any_connection(strict: Issuer, url: str) -> None:
    response = strict.client.post("/v1/webhooks", json={"url": url}, headers=strict.auth())
    error_body(response, 400, "invalid_request")
    assert strict.store.webhooks.list_endpoints()[1] == 0


def test_refused_on_update_too(strict: Issuer) -> None:
    made = strict.client.post(
        "/v1/webhooks", json={"url": "https://hooks.example.com/hook"}, headers=strict.auth()
    )
    assert made.status_code == 201, made.get_json()
    response = strict.client.put(
        f"/v1/webhooks/{made.get_json()['id']}",
        json={"url": "https://169.254.169.254/"},
        headers=strict.auth(),
    )
    error_body(response, 400, "invalid_request")


def test_refused_again_at_delivery_when_dns_changes(
    strict: Issuer, monkeypatch: pytest.MonkeyPatch, guarded: list[Any]
) -> None:
    """Created while the name was public; at delivery it resolves to a private address:
    the attempt fails without a connection (the socket guard would record one)."""
    made = strict.client.post(
        "/v1/webhooks", json={"url": "https://hooks.example.com/hook"}, headers=strict.auth()
    )
    assert made.status_code == 201
    monkeypatch.setattr(ssrf, "resolve", stub_resolver({"hooks.example.com": ["127.0.0.1"]}))
    app = strict.new_app()
    with strict.store.unit_of_work(Actor(kind="cli", id="t")) as unit:
        lic = strict.store.licenses.create(app.id)
        unit.record(Change(action="license.create", target=lic.id, app_id=app.id, subject=lic))
    assert strict.state.webhooks is not None
    report = Worker(strict.state.webhooks, threads=1).run_once()
    assert (report.attempted, report.failed) == (1, 1)
    [delivery] = strict.store.webhooks.list_deliveries(made.get_json()["id"])
    assert delivery.status == "pending"  # retried later, never sent
    assert delivery.last_error is not None and "destination refused" in delivery.last_error
    assert guarded == []


def test_a_test_event_to_a_refused_destination_opens_no_connection(
    strict: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = strict.client.post(
        "/v1/webhooks", json={"url": "https://hooks.example.com/hook"}, headers=strict.auth()
    ).get_json()
    monkeypatch.setattr(ssrf, "resolve", stub_resolver({"hooks.example.com": ["10.9.9.9"]}))
    sent = strict.client.post(f"/v1/webhooks/{made['id']}/test", headers=strict.auth())
    assert sent.status_code == 200
    assert sent.get_json()["success"] is False
    assert "destination refused" in sent.get_json()["error"]


def test_the_guard_and_the_policy_can_fail(guarded: list[Any]) -> None:
    """The tests above could fail: the policy refuses, and the guard records, for real."""
    policy = DestinationPolicy()
    assert policy.addresses("hooks.example.com", 443) == ["93.184.215.14"]
    with pytest.raises(DestinationRefused):
        policy.addresses("internal.example.com", 443)
    assert DestinationPolicy(allow_private=True).addresses("internal.example.com", 443) == [
        "10.1.2.3"
    ]
    import socket

    with pytest.raises(ConnectionRefusedError), socket.socket() as s:
        s.connect(("93.184.215.14", 443))
    assert guarded == [("93.184.215.14", 443)]
    guarded.clear()


def test_the_development_switch_allows_loopback_and_http(
    tmp_path: Path, guarded: list[Any]
) -> None:
    made = make_issuer(tmp_path, webhooks_allow_private=True)
    try:
        response = made.client.post(
            "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=made.auth()
        )
        assert response.status_code == 201
    finally:
        close_issuer(made)


@pytest.mark.parametrize("url", REFUSED)
def test_an_apps_webhook_url_is_refused_at_creation_and_on_update(strict: Issuer, url: str) -> None:
    """The app's ``webhookUrl`` (LicenseChain's SDK field) becomes an endpoint: the same
    rule applies when it is set, before anything is stored."""
    created = strict.client.post(
        "/v1/apps", json={"name": "Hooked", "webhookUrl": url}, headers=strict.auth()
    )
    error_body(created, 400, "invalid_request")
    assert strict.store.webhooks.list_endpoints()[1] == 0
    plain = strict.new_app(name="Plain")
    updated = strict.client.patch(
        f"/v1/apps/{plain.id}", json={"webhookUrl": url}, headers=strict.auth()
    )
    error_body(updated, 400, "invalid_request")
    assert strict.store.apps.get(plain.id).webhook_url is None
    assert strict.store.webhooks.list_endpoints()[1] == 0


def test_an_apps_public_webhook_url_is_accepted(strict: Issuer) -> None:
    created = strict.client.post(
        "/v1/apps",
        json={"name": "Hooked", "webhookUrl": "https://hooks.example.com/hook"},
        headers=strict.auth(),
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["webhookUrl"] == "https://hooks.example.com/hook"
