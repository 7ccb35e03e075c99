"""The console's Customers page: export (a JSON download, no-store) and erasure (the second
factor asked again, the address typed twice), through the same service as the API; scopes,
app limits, CSRF and escaping."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from console_support import make_console_app, post_form, session_cookie_for, signed_in_client
from flask import Flask

from flask_licensechain.console.sessions import COOKIE_NAME
from flask_licensechain.state import get_issuer_state
from flask_licensechain.store import LicenseRecord

PAGE = "/console/customers"
ANN = "Ann.Example@example.test"
XSS = '"><script>alert("xss")</script> @example.test'


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_console_app(tmp_path)


def _license(app: Flask, email: str = ANN, app_name: str = "Shop") -> LicenseRecord:
    store = get_issuer_state(app).store
    owner = store.apps.create(app_name)
    return store.licenses.create(owner.id, plan="pro", issued_email=email, issued_to="Ann Example")


def _erase(client: object, email: str, confirm: str | None = None) -> object:
    form = {"erase-email": email, "erase-confirm": email if confirm is None else confirm}
    return post_form(client, f"{PAGE}/erase", form, page=PAGE)  # type: ignore[arg-type]


def test_an_owner_downloads_the_export(app: Flask) -> None:
    lic = _license(app)
    client, _ = signed_in_client(app, "owner")
    assert client.get(PAGE).status_code == 200
    response = post_form(client, f"{PAGE}/export", {"export-email": ANN.upper()}, page=PAGE)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "attachment" in response.headers["Content-Disposition"]
    document = json.loads(response.get_data(as_text=True))
    assert document["format"] == "licensechain.customer-export"
    assert [item["id"] for item in document["licenses"]] == [lic.id]
    last = get_issuer_state(app).store.audit.list(limit=1)[0]
    assert (last.action, last.actor_kind) == ("customer.export", "console")


def test_erasure_asks_for_the_second_factor_again(app: Flask) -> None:
    lic = _license(app)
    client, person = signed_in_client(app, "admin")
    stale = app.test_client()
    stale.set_cookie(COOKIE_NAME, session_cookie_for(app, person, mfa_age=timedelta(days=1)))
    refused = _erase(stale, ANN)
    assert refused.status_code in (302, 303)  # type: ignore[attr-defined]
    assert "/reauth" in refused.headers["Location"]  # type: ignore[attr-defined]
    store = get_issuer_state(app).store
    assert store.licenses.get(lic.id).issued_email == ANN  # type: ignore[union-attr]
    done = _erase(client, ANN)
    assert done.status_code == 303  # type: ignore[attr-defined]
    kept = store.licenses.get(lic.id)
    assert kept is not None and kept.issued_email.startswith("erased-") and kept.issued_to is None
    event = store.audit.list(limit=1)[0]
    assert (event.action, event.actor_kind) == ("customer.erase", "console")
    assert "example.test" not in json.dumps([event.target, event.data]).lower()
    assert store.audit.verify().ok


def test_a_mistyped_confirmation_erases_nothing(app: Flask) -> None:
    lic = _license(app)
    client, _ = signed_in_client(app, "owner")
    response = _erase(client, ANN, confirm="ann.example@example.tes")
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "differ" in response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert get_issuer_state(app).store.licenses.get(lic.id).issued_email == ANN  # type: ignore[union-attr]


@pytest.mark.parametrize("role", ["support", "developer", "auditor", "readonly"])
def test_roles_without_the_scope_are_refused(app: Flask, role: str) -> None:
    lic = _license(app)
    client, _ = signed_in_client(app, role)
    assert client.get(PAGE).status_code == 403
    page = "/console/account"
    assert post_form(client, f"{PAGE}/export", {"export-email": ANN}, page=page).status_code == 403
    form = {"erase-email": ANN, "erase-confirm": ANN}
    assert post_form(client, f"{PAGE}/erase", form, page=page).status_code == 403
    assert get_issuer_state(app).store.licenses.get(lic.id).issued_email == ANN  # type: ignore[union-attr]
    assert PAGE not in client.get(page).get_data(as_text=True)  # no link either


def test_an_app_limited_user_erases_in_its_apps_only(app: Flask) -> None:
    mine = _license(app, app_name="Mine")
    theirs = _license(app, app_name="Theirs")
    client, _ = signed_in_client(app, "admin", app_ids=(mine.app_id,))
    exported = post_form(client, f"{PAGE}/export", {"export-email": ANN}, page=PAGE)
    ids = [item["id"] for item in json.loads(exported.get_data(as_text=True))["licenses"]]
    assert ids == [mine.id]
    assert _erase(client, ANN).status_code == 303  # type: ignore[attr-defined]
    store = get_issuer_state(app).store
    assert store.licenses.get(mine.id).issued_email.startswith("erased-")  # type: ignore[union-attr]
    assert store.licenses.get(theirs.id).issued_email == ANN  # type: ignore[union-attr]


def test_without_a_csrf_token_nothing_happens(app: Flask) -> None:
    lic = _license(app)
    client, _ = signed_in_client(app, "owner")
    response = client.post(f"{PAGE}/erase", data={"erase-email": ANN, "erase-confirm": ANN})
    assert response.status_code in (400, 403)
    assert get_issuer_state(app).store.licenses.get(lic.id).issued_email == ANN  # type: ignore[union-attr]


def test_every_control_has_its_own_id_and_label(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    html = client.get(PAGE).get_data(as_text=True)
    ids = re.findall(r'<input[^>]* id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) and {"export-email", "erase-email", "erase-confirm"} <= set(
        ids
    )
    for control in ("export-email", "erase-email", "erase-confirm"):
        assert f'<label for="{control}">' in html


def test_bad_input_is_escaped_and_refused(app: Flask) -> None:
    client, _ = signed_in_client(app, "owner")
    response = post_form(client, f"{PAGE}/export", {"export-email": XSS}, page=PAGE)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "<script>alert" not in html
    assert "&lt;script&gt;" in html and "must be one whole e-mail address" in html
    blank = post_form(client, f"{PAGE}/export", {"export-email": "ann"}, page=PAGE)
    assert blank.status_code == 400
