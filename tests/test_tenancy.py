"""Tenancy: app-limited keys (a set of apps) and environments (lc_test_ keys on test-mode
apps, lc_live_ keys on live ones) see nothing else, on EVERY admin route.

The walk reads the app's URL map, so a route another branch adds later is walked too. For
each route and method it sends the same request twice, once naming another tenant's object
and once naming an object that does not exist: both answers must be the same 403 or 404
(the key cannot tell whether the object exists), and a route without an object must not show
another tenant's ids in a 2xx answer. Adding objects to another tenant must not change any
listing or count the key sees. A route whose path parameter the walk does not know fails
the test: tell ``OBJECTS`` how to name another tenant's object of that kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from issuer_support import Issuer, close_issuer, error_body, make_issuer
from webhooks_support import socket_guard
from werkzeug.routing import Rule

from flask_licensechain.api.auth import REQUIRED_SCOPE_ATTR
from flask_licensechain.api.blueprint import BLUEPRINT_NAME
from flask_licensechain.services import webhooks as webhooks_service
from flask_licensechain.store import Actor
from flask_licensechain.webhooks import ssrf
from flask_licensechain.webhooks.ssrf import DestinationPolicy

pytest_plugins = ["issuer_fixtures"]

MISSING = {
    "app_id": "app_000000000000000000000000",
    "ref": "lic_000000000000000000000000",
    "hwuid": "m1",
    "key_id": "key_000000000000000000000000",
    "webhook_id": "whk_000000000000000000000000",
    "delivery_id": "999999999",
}
#: bodies tried, in order, until the request naming a missing object gets past validation
#: (placeholders: APP, TOKEN, LICENSE_KEY are the other tenant's, or missing ones)
BODIES: list[Any] = [
    {},
    {"expiresAt": None},
    {"status": "SUSPENDED"},
    {"hwuid": "m1"},
    {"plan": "x"},
    {"name": "walker"},
    {"gracePeriodSeconds": 0},
    {"license_token": "TOKEN"},
    {"name": "walker", "scopes": ["apps:read"], "appIds": ["APP"]},
    {"name": "walker", "mode": "live"},
    {"key": "LICENSE_KEY"},
    {"url": "https://hooks.example.com/x", "app_id": "APP"},
]
#: what the walk sends without an object in the path: query strings
QUERIES = ["", "?app_id=APP"]
USAGE_FIELDS = {"lastUsedAt", "lastUsedIp", "usageCount", "timestamp"}


@dataclass
class Tenant:
    """Another tenant's objects, as the walk names them."""

    app_id: str
    license_id: str
    license_key: str
    key_id: str | None  # None: the walker may see that tenant's keys by design (none now)
    token: str
    webhook_id: str
    delivery_id: str

    def objects(self) -> dict[str, str | None]:
        return {
            "app_id": self.app_id,
            "ref": self.license_id,
            "hwuid": "m1",
            "key_id": self.key_id,
            "webhook_id": self.webhook_id,
            "delivery_id": self.delivery_id,
        }

    def secrets(self) -> list[str]:
        found = [self.app_id, self.license_id, self.license_key, self.webhook_id]
        return found + ([self.key_id] if self.key_id else [])


@dataclass
class World:
    issuer: Issuer
    walker: str  # the API key that walks
    theirs: Tenant
    grow: Callable[[], None]  # adds objects to the other tenant


def _tenant(issuer: Issuer, mode: str, key_visible: bool) -> Tenant:
    app = issuer.store.apps.create(f"Their {mode} app", tier="pro", mode=mode)
    lic = issuer.new_license(app.id, max_devices=2)
    token = issuer.token_for(lic.key, hwuid="m1")
    key, _ = issuer.store.api_keys.create("theirs", ["*"], environment=mode, app_ids=[app.id])
    runtime = issuer.state.webhooks
    created = webhooks_service.create_endpoint(
        AcceptingPolicy(runtime),  # type: ignore[arg-type]
        Actor(kind="cli", id="tenancy"),
        url="https://hooks.example.com/theirs",
        events=None,
        app_id=app.id,
    )
    delivery, _ = webhooks_service.send_test(runtime, created.endpoint)
    return Tenant(
        app.id,
        lic.id,
        lic.key,
        None if key_visible else key.id,
        token,
        created.endpoint.id,
        str(delivery.id),
    )


class AcceptingPolicy:
    """The webhook runtime with a policy that accepts the planted URL at creation (names
    never resolve in these tests, so nothing is ever sent)."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self.policy = DestinationPolicy(resolver=lambda host, port: ["93.184.215.14"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)


def _refuse_every_name(host: str, port: int) -> list[str]:
    raise ssrf.DestinationRefused(f"{host}: no DNS in tests")


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(ssrf, "resolve", _refuse_every_name)
    with socket_guard(strict=False):
        yield


def _world(issuer: Issuer, variant: str) -> World:
    mine = issuer.store.apps.create("Mine", mode="test" if variant == "test key" else "live")
    own = issuer.new_license(mine.id)
    issuer.token_for(own.key, hwuid="m1")
    if variant == "app-limited key":
        _, walker = issuer.store.api_keys.create("walker", ["*"], app_ids=[mine.id])
        theirs = _tenant(issuer, "live", key_visible=False)
    elif variant == "app-limited key of two apps":
        second = issuer.store.apps.create("Mine too")
        _, walker = issuer.store.api_keys.create("walker", ["*"], app_ids=[mine.id, second.id])
        theirs = _tenant(issuer, "live", key_visible=False)
    elif variant == "test key":
        _, walker = issuer.store.api_keys.create("walker", ["*"], environment="test")
        theirs = _tenant(issuer, "live", key_visible=False)
    else:  # a live key of every app against a test app
        _, walker = issuer.store.api_keys.create("walker", ["*"])
        theirs = _tenant(issuer, "test", key_visible=False)

    every_live_app = variant == "live key on test app"

    def grow() -> None:
        # Through the API, so that each change is also an audit event of their app.
        mode = issuer.store.apps.mode_of(theirs.app_id)
        _, owner = issuer.store.api_keys.create("their owner", ["*"], environment=mode)
        made = issuer.client.post(
            f"/v1/apps/{theirs.app_id}/licenses", json={}, headers=issuer.auth(owner)
        )
        assert made.status_code == 201, made.get_json()
        issuer.verify(key=made.get_json()["key"], hwuid="m9")
        limited = {"name": "more", "scopes": ["apps:read"], "appIds": [theirs.app_id]}
        created = issuer.client.post("/v1/api-keys", json=limited, headers=issuer.auth(owner))
        assert created.status_code == 201, created.get_json()
        if not every_live_app:  # a reader of every live app sees what belongs to no app
            issuer.verify(key="LC-ZZZZZZ-ZZZZZZ-ZZZZZZ")

    return World(issuer, walker, theirs, grow)


VARIANTS = ["app-limited key", "app-limited key of two apps", "test key", "live key on test app"]


@pytest.fixture(params=VARIANTS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    issuer = make_issuer(tmp_path)
    try:
        yield _world(issuer, request.param)
    finally:
        close_issuer(issuer)


def admin_rules(issuer: Issuer) -> list[Rule]:
    rules = []
    for rule in issuer.app.url_map.iter_rules():
        if not rule.endpoint.startswith(BLUEPRINT_NAME + "."):
            continue
        if getattr(issuer.app.view_functions[rule.endpoint], REQUIRED_SCOPE_ATTR, None):
            rules.append(rule)
    return rules


def _fill(value: Any, mapping: dict[str, str]) -> Any:
    text = json.dumps(value)
    for placeholder, actual in mapping.items():
        text = text.replace(f'"{placeholder}"', json.dumps(actual))
    return json.loads(text)


def _send(world: World, method: str, path: str, body: Any) -> Any:
    kwargs: dict[str, Any] = {"headers": world.issuer.auth(world.walker)}
    if body is not None:
        kwargs["json"] = body
    return world.issuer.client.open(path, method=method, **kwargs)


def _answer(response: Any) -> tuple[int, str | None]:
    body = response.get_json(silent=True) or {}
    return response.status_code, body.get("error")


def _strip_usage(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_usage(v) for k, v in value.items() if k not in USAGE_FIELDS}
    if isinstance(value, list):
        return [_strip_usage(v) for v in value]
    return value


def test_every_admin_route_hides_the_other_tenant(world: World) -> None:
    theirs = world.theirs
    their_fill = {"APP": theirs.app_id, "TOKEN": theirs.token, "LICENSE_KEY": theirs.license_key}
    missing_fill = {
        "APP": MISSING["app_id"],
        # a token this issuer never signed, for an app that does not exist
        "TOKEN": jwt.encode(
            {"jti": "j" * 22, "aud": MISSING["app_id"], "exp": 4102444800}, "k" * 32, "HS256"
        ),
        "LICENSE_KEY": "LC-AAAAAA-AAAAAA-AAAAAA",
    }
    walked = 0
    listings: list[str] = []
    rules = admin_rules(world.issuer)
    assert len(rules) >= 25  # the walk sees the whole API
    for rule in rules:
        unknown = set(rule.arguments) - set(MISSING)
        assert not unknown, f"{rule.rule}: tell OBJECTS/MISSING how to name {unknown}"
        objects = theirs.objects()
        if any(objects[arg] is None for arg in rule.arguments):
            continue  # by design visible (a live key managing test keys)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            refs = ["id", "key"] if "ref" in rule.arguments else ["id"]
            for ref_kind in refs:
                their_args = {a: objects[a] for a in rule.arguments}
                if ref_kind == "key":
                    their_args["ref"] = theirs.license_key
                missing_args = {a: MISSING[a] for a in rule.arguments}
                if ref_kind == "key":
                    missing_args["ref"] = "LC-AAAAAA-AAAAAA-AAAAAA"
                their_path = rule.build(their_args, append_unknown=False)[1]  # type: ignore[index]
                missing_path = rule.build(missing_args, append_unknown=False)[1]  # type: ignore[index]
                if rule.arguments:
                    walked += _walk_object_route(
                        world, method, their_path, missing_path, their_fill, missing_fill
                    )
                else:
                    walked += _walk_plain_route(
                        world, method, their_path, their_fill, missing_fill, listings
                    )
    assert walked >= 40
    # Growing the other tenant changes nothing the walker sees.
    listing_answers = {
        path: _strip_usage(_send(world, "GET", path, None).get_json()) for path in listings
    }
    world.grow()
    world.issuer.store.verification_tally.flush()
    for path, before in listing_answers.items():
        after = _send(world, "GET", path, None)
        assert _strip_usage(after.get_json()) == before, path


def _walk_object_route(
    world: World,
    method: str,
    their_path: str,
    missing_path: str,
    their_fill: dict[str, str],
    missing_fill: dict[str, str],
) -> int:
    bodies = [None] if method == "GET" else BODIES
    for template in bodies:
        missing = _send(world, method, missing_path, _fill(template, missing_fill))
        if missing.status_code == 400 and template is not bodies[-1]:
            continue  # this body does not pass validation: try the next
        theirs = _send(world, method, their_path, _fill(template, their_fill))
        where = (method, their_path, template)
        assert _answer(theirs) == _answer(missing), where
        assert theirs.status_code in (403, 404), (where, theirs.get_json())
        error_body(theirs, theirs.status_code, _answer(theirs)[1] or "")
        return 1
    raise AssertionError("unreachable")


def _walk_plain_route(
    world: World,
    method: str,
    path: str,
    their_fill: dict[str, str],
    missing_fill: dict[str, str],
    listings: list[str],
) -> int:
    walked = 0
    if method == "GET":
        for query in QUERIES:
            theirs = _send(world, method, path + _fill_query(query, their_fill), None)
            missing = _send(world, method, path + _fill_query(query, missing_fill), None)
            assert _answer(theirs) == _answer(missing), (path, query)
            _no_secrets(world, theirs, (path, query))
            if query == "" and theirs.status_code == 200:
                listings.append(path)
            walked += 1
        return walked
    for template in BODIES:
        theirs = _send(world, method, path, _fill(template, their_fill))
        missing = _send(world, method, path, _fill(template, missing_fill))
        if "APP" in json.dumps(template) or "TOKEN" in json.dumps(template):
            assert _answer(theirs) == _answer(missing), (method, path, template)
        _no_secrets(world, theirs, (method, path, template))
        walked += 1
    return walked


def _fill_query(query: str, mapping: dict[str, str]) -> str:
    for placeholder, actual in mapping.items():
        query = query.replace(placeholder, actual)
    return query


def _no_secrets(world: World, response: Any, where: Any) -> None:
    text = response.get_data(as_text=True)
    if response.status_code < 300:
        for secret in world.theirs.secrets():
            assert secret not in text, (where, secret)


# -- the environments and app sets, one by one -------------------------------------------------


@pytest.fixture
def sqlite_issuer(tmp_path: Path) -> Iterator[Issuer]:
    made = make_issuer(tmp_path)
    try:
        yield made
    finally:
        close_issuer(made)


def test_a_test_key_acts_on_test_apps_whose_licenses_are_real(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    _, test_key = issuer.store.api_keys.create("sandbox", ["*"], environment="test")
    created = issuer.client.post(
        "/v1/apps", json={"name": "Sandbox"}, headers=issuer.auth(test_key)
    )
    assert created.status_code == 201 and created.get_json()["mode"] == "test"
    app_id = created.get_json()["id"]
    error_body(
        issuer.client.post(
            "/v1/apps", json={"name": "Live", "mode": "live"}, headers=issuer.auth(test_key)
        ),
        403,
        "insufficient_scope",
    )
    lic = issuer.client.post(
        f"/v1/apps/{app_id}/licenses", json={"plan": "pro"}, headers=issuer.auth(test_key)
    ).get_json()
    # A test app's license verifies like any other (sellers rehearse with it).
    answer = issuer.verify(key=lic["key"]).get_json()
    assert answer["valid"] is True and answer["license_token"]
    # The live admin key does not see the test app, and cannot change its mode.
    error_body(issuer.client.get(f"/v1/apps/{app_id}", headers=issuer.auth()), 404, "not_found")
    live_app = issuer.new_app()
    error_body(
        issuer.client.patch(
            f"/v1/apps/{live_app.id}", json={"mode": "test"}, headers=issuer.auth()
        ),
        400,
        "invalid_request",
    )
    listed = issuer.client.get("/v1/apps", headers=issuer.auth(test_key)).get_json()
    assert [a["id"] for a in listed["apps"]] == [app_id]
    error_body(
        issuer.client.post("/v1/signing-keys/rotate", headers=issuer.auth(test_key)),
        403,
        "insufficient_scope",
    )


def test_a_key_of_two_apps_sees_both_and_nothing_else(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    a, b, c = (issuer.new_app(name=n) for n in ("A", "B", "C"))
    lics = {app.id: issuer.new_license(app.id) for app in (a, b, c)}
    _, key = issuer.store.api_keys.create("two", ["*"], app_ids=[a.id, b.id])
    auth = issuer.auth(key)
    apps = issuer.client.get("/v1/apps", headers=auth).get_json()
    assert {x["id"] for x in apps["apps"]} == {a.id, b.id} and apps["total"] == 2
    listed = issuer.client.get("/v1/licenses", headers=auth).get_json()
    assert {x["id"] for x in listed["licenses"]} == {lics[a.id].id, lics[b.id].id}
    assert issuer.client.get("/v1/licenses/stats", headers=auth).get_json()["total"] == 2
    assert issuer.client.get(f"/v1/licenses?app_id={b.id}", headers=auth).get_json()["total"] == 1
    error_body(issuer.client.get(f"/v1/licenses?app_id={c.id}", headers=auth), 404, "not_found")
    error_body(issuer.client.get(f"/v1/licenses/{lics[c.id].key}", headers=auth), 404, "not_found")


def test_deleting_an_app_narrows_key_sets_and_never_widens_them(sqlite_issuer: Issuer) -> None:
    issuer = sqlite_issuer
    a, b = issuer.new_app(name="A"), issuer.new_app(name="B")
    both, _ = issuer.store.api_keys.create("both", ["*"], app_ids=[a.id, b.id])
    only_a, only_a_secret = issuer.store.api_keys.create("a", ["*"], app_ids=[a.id])
    deleted = issuer.client.delete(f"/v1/apps/{a.id}", headers=issuer.auth())
    assert deleted.status_code == 200
    assert issuer.store.api_keys.get(both.id).app_ids == {b.id}
    # A key of that app alone is revoked, not turned into a key of every app.
    assert issuer.store.api_keys.get(only_a.id).revoked
    error_body(
        issuer.client.get("/v1/apps", headers=issuer.auth(only_a_secret)), 401, "unauthorized"
    )
