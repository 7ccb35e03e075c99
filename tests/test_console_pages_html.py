"""The business pages' HTML: every form control has a label, no inline script or style
(the Content-Security-Policy forbids them), every POST form carries its CSRF token, and
stored XSS through license metadata, names, emails, app names and key names never comes
out unescaped.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from console_support import make_console_app, post_form, signed_in_client
from flask import Flask

from flask_licensechain.console.state import console_state
from flask_licensechain.services import webhooks as webhook_service
from flask_licensechain.state import get_issuer_state
from flask_licensechain.store import Actor

ACCOUNT = "/console/account"
PAYLOAD = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
UNLABELLED_TYPES = {"hidden", "submit", "button", "reset", "image"}


class Page(HTMLParser):
    """Collects the controls, labels, forms, scripts and styles of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, Any]] = []
        self.label_for: set[str] = set()
        self.label_depth = 0
        self.forms: list[dict[str, Any]] = []
        self.inline_scripts = 0
        self.inline_styles: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if "style" in a:
            self.inline_styles.append(tag)
        if any(name.startswith("on") for name in a):
            self.inline_styles.append(f"{tag} event handler")
        if tag == "style":
            self.inline_styles.append("style element")
        if tag == "script" and not a.get("src"):
            self.inline_scripts += 1
        if tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        if tag == "form":
            self.forms.append({"method": (a.get("method") or "get").lower(), "csrf": False})
        if tag == "input" and a.get("name") == "csrf_token" and self.forms:
            self.forms[-1]["csrf"] = True
        if tag in ("input", "select", "textarea"):
            kind = (a.get("type") or "text").lower() if tag == "input" else tag
            if kind not in UNLABELLED_TYPES:
                self.controls.append({**a, "_tag": tag, "_wrapped": self.label_depth > 0})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth -= 1

    def unlabelled(self) -> list[dict[str, Any]]:
        return [
            c
            for c in self.controls
            if not c["_wrapped"]
            and c.get("id") not in self.label_for
            and not c.get("aria-label")
            and not c.get("aria-labelledby")
        ]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_console_app(tmp_path, LICENSECHAIN_WEBHOOKS_ALLOW_PRIVATE=True)


def _seed(app: Flask, text: str) -> dict[str, Any]:
    """Objects whose every free-text field holds ``text``."""
    store = get_issuer_state(app).store
    demo = store.apps.create(text[:200], description=text)
    lic = store.licenses.create(
        demo.id,
        plan=text[:200],
        issued_to=text[:200],
        issued_email=text[:200],
        features=["ok"],
        metadata={"note": text, text[:50]: "key"},
    )
    store.licenses.bind_device(lic.id, text[:200], lic.created_at)
    store.api_keys.create(text[:200], ["licenses:read"])
    runtime = get_issuer_state(app).webhooks
    assert runtime is not None
    hook = webhook_service.create_endpoint(
        runtime,
        Actor(kind="system", id="test"),
        url="http://127.0.0.1:9/hook",
        events=None,
        app_id=demo.id,
        description=text,
    ).endpoint
    return {"app": demo, "license": lic, "webhook": hook}


def _all_pages(d: dict[str, Any]) -> list[str]:
    return [
        "/console/overview",
        "/console/apps",
        f"/console/apps/{d['app'].id}",
        "/console/licenses",
        f"/console/licenses/{d['license'].id}",
        f"/console/licenses?q={d['license'].key}",
        "/console/api-keys",
        "/console/webhooks",
        f"/console/webhooks/{d['webhook'].id}",
        "/console/signing-keys",
        "/console/audit",
        "/console/users",
    ]


def test_every_control_has_a_label_and_every_post_form_a_csrf_token(app: Flask) -> None:
    d = _seed(app, "Plain name")
    client, _ = signed_in_client(app, "owner")
    controls = 0
    for path in _all_pages(d):
        response = client.get(path)
        assert response.status_code == 200, path
        page = parse(response.get_data(as_text=True))
        controls += len(page.controls)
        assert page.unlabelled() == [], path
        assert all(form["csrf"] for form in page.forms if form["method"] == "post"), path
        assert page.inline_scripts == 0 and page.inline_styles == [], path
        assert len(page.ids) == len(set(page.ids)), (path, sorted(page.ids))
    assert controls > 20  # the check saw the forms


def test_the_label_check_can_fail() -> None:
    page = parse('<form><label for="a">A</label><input id="a"><input id="b" name="b"></form>')
    assert [c["id"] for c in page.unlabelled()] == ["b"]
    assert parse("<script>x()</script>").inline_scripts == 1
    assert parse('<p style="color:red">x</p>').inline_styles == ["p"]


def test_stored_xss_never_comes_out_unescaped(app: Flask) -> None:
    d = _seed(app, PAYLOAD)
    state = console_state(app)
    client, _ = signed_in_client(app, "owner", display_name=PAYLOAD)
    # a console user with the payload as display name, and audit events carrying it
    post_form(
        client,
        "/console/users",
        {"email": "x@example.test", "role": "support", "display_name": PAYLOAD},
        page=ACCOUNT,
    )
    post_form(
        client,
        f"/console/licenses/{d['license'].id}/revoke",
        {"reason": PAYLOAD},
        page=ACCOUNT,
    )
    assert state.repo.find_user_by_email("x@example.test") is not None
    for path in _all_pages(d):
        html = client.get(path).get_data(as_text=True)
        assert PAYLOAD not in html, path
        assert "<script>alert" not in html and "<img src=x" not in html, path
    # the search box echoes the query escaped too
    html = client.get("/console/licenses", query_string={"q": PAYLOAD}).get_data(as_text=True)
    assert PAYLOAD not in html and "&lt;script&gt;" in html


def test_a_post_without_csrf_token_is_refused(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    response = client.post("/console/apps", data={"name": "No token", "tier": "free"})
    assert response.status_code == 400
    assert get_issuer_state(app).store.apps.list() == []
