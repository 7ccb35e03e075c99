"""``GET /v1/audit-events``: scope ``audit:read``, filters, opaque cursor pagination, and the
key's app restriction (another app's events are invisible; asking for that app is 404)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from issuer_support import Issuer, close_issuer, error_body, make_issuer

pytest_plugins = ["issuer_fixtures"]


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[tuple[Issuer, str, str, str]]:
    """Two apps with a license each, changed through the API: (issuer, app a, app b, lic a)."""
    made = make_issuer(tmp_path)
    try:
        apps = []
        for name in ("A", "B"):
            response = made.post("/v1/apps", {"name": name}, headers=made.auth())
            apps.append(response.get_json()["id"])
        lic = made.post(f"/v1/apps/{apps[0]}/licenses", {}, headers=made.auth()).get_json()
        made.post(f"/v1/apps/{apps[1]}/licenses", {}, headers=made.auth())
        made.client.patch(f"/v1/licenses/{lic['id']}/suspend", json={}, headers=made.auth())
        made.post("/v1/signing-keys/rotate", headers=made.auth())
        yield made, apps[0], apps[1], lic["id"]
    finally:
        close_issuer(made)


def events(issuer: Issuer, key: str | None = None, **query: Any) -> list[dict[str, Any]]:
    response = issuer.client.get("/v1/audit-events", query_string=query, headers=issuer.auth(key))
    assert response.status_code == 200, response.get_json()
    found: list[dict[str, Any]] = response.get_json()["events"]
    return found


def test_lists_newest_first_with_the_actor(busy: tuple[Issuer, str, str, str]) -> None:
    issuer, app_a, _, lic = busy
    found = events(issuer)
    assert [e["action"] for e in found] == [
        "signing_key.rotate",
        "license.suspend",
        "license.create",
        "license.create",
        "app.create",
        "app.create",
        "signing_key.create",  # the issuer's first key, at start-up
    ]
    assert found[-1]["actor"]["kind"] == "system"
    suspend = found[1]
    assert (suspend["target"], suspend["appId"], suspend["actor"]["kind"]) == (
        lic,
        app_a,
        "api_key",
    )
    assert suspend["actor"]["name"] == "admin" and suspend["requestId"]
    assert suspend["seq"] == 6 and suspend["createdAt"].endswith("Z")


def test_filters(busy: tuple[Issuer, str, str, str]) -> None:
    issuer, _, app_b, lic = busy
    assert [e["action"] for e in events(issuer, action="app.create")] == ["app.create"] * 2
    assert [e["action"] for e in events(issuer, target=lic)] == [
        "license.suspend",
        "license.create",
    ]
    assert {e["appId"] for e in events(issuer, app_id=app_b)} == {app_b}
    actor = events(issuer)[0]["actor"]["id"]
    assert len(events(issuer, actor=actor)) == 6 and events(issuer, actor="nobody") == []
    newest = events(issuer)[0]["createdAt"]
    assert [e["action"] for e in events(issuer, since=newest)] == ["signing_key.rotate"]
    assert "signing_key.rotate" not in [e["action"] for e in events(issuer, until=newest)]


def test_cursor_pagination_walks_every_event_once(busy: tuple[Issuer, str, str, str]) -> None:
    issuer = busy[0]
    seen: list[int] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 4}
        if cursor:
            query["cursor"] = cursor
        page = issuer.client.get("/v1/audit-events", query_string=query, headers=issuer.auth())
        body = page.get_json()
        seen += [e["id"] for e in body["events"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
        assert str(seen[-1]) not in cursor  # opaque
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 7


@pytest.mark.parametrize(
    "query",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "YWUxOi0x"},  # ae1:-1
        {"limit": 0},
        {"limit": 101},
        {"since": "yesterday"},
        {"action": "x" * 65},
        {"target": "a\x00b"},
    ],
)
def test_bad_queries_are_400(busy: tuple[Issuer, str, str, str], query: dict[str, Any]) -> None:
    issuer = busy[0]
    response = issuer.client.get("/v1/audit-events", query_string=query, headers=issuer.auth())
    error_body(response, 400, "invalid_request")


def test_needs_the_audit_read_scope(busy: tuple[Issuer, str, str, str]) -> None:
    issuer = busy[0]
    response = issuer.client.get(
        "/v1/audit-events", headers=issuer.auth(issuer.api_key("apps:read"))
    )
    error_body(response, 403, "insufficient_scope")
    assert issuer.client.get("/v1/audit-events").status_code == 401
    assert len(events(issuer, issuer.api_key("audit:read"))) == 7


def test_an_app_limited_key_sees_only_its_app(busy: tuple[Issuer, str, str, str]) -> None:
    issuer, app_a, app_b, _ = busy
    _, limited = issuer.store.api_keys.create("auditor", ["audit:read"], app_id=app_a)
    mine = events(issuer, limited)
    assert mine and {e["appId"] for e in mine} == {app_a}  # no other app, no app-less event
    assert events(issuer, limited, app_id=app_a) == mine
    response = issuer.client.get(
        "/v1/audit-events", query_string={"app_id": app_b}, headers=issuer.auth(limited)
    )
    error_body(response, 404, "not_found")
    # a cursor of an unrestricted listing does not widen the view
    page = issuer.client.get("/v1/audit-events", query_string={"limit": 1}, headers=issuer.auth())
    cursor = page.get_json()["nextCursor"]
    after = events(issuer, limited, cursor=cursor)
    assert {e["appId"] for e in after} == {app_a}
