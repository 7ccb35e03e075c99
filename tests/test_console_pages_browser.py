"""The business pages in a real browser: Debian's headless Chromium (Selenium) against the
console served by its own ``flask run`` process (``browser_support``).

Flows: an owner signs in (password and TOTP), creates an app and a license, sees the
license verify, revokes it, and ``POST /v1/licenses/verify`` (a real HTTP request) now says
``license_revoked``; creates an API key, sees the secret once, and uses it over HTTP; a
``support`` user has no API-keys link, gets 403 on the page, and a direct POST (with the
session's valid CSRF token) is refused with 403. Screenshots of the main pages go to
docs/console-screenshots/pages-*.png.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import (
    ConsoleServer,
    click_and_wait,
    cookie_header,
    database_url,
    fill,
    flash_text,
    http,
    need_browser,
    new_driver,
    shot,
    sign_in,
    submit,
    wait_path,
)
from console_support import PASSWORD, Person, create_person, make_console_app
from flask import Flask

pytestmark = pytest.mark.slow

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select
except ImportError:  # pragma: no cover - dev extra
    pass


class World:
    """The server, the people made before it started, and what the flows leave behind."""

    def __init__(self, server: ConsoleServer, owner: Person, support: Person) -> None:
        self.server = server
        self.owner = owner
        self.support = support
        self.license_key = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    need_browser()
    tmp = tmp_path_factory.mktemp("console-pages-browser")
    # The people are written to the store first, by an app in this process on the same file.
    app: Flask = make_console_app(tmp, database_url(tmp))
    owner = create_person(app, "owner", email="owner@example.test", display_name="Olive Owner")
    support = create_person(app, "support", email="support@example.test", display_name="Sam")
    server = ConsoleServer(tmp)
    try:
        yield World(server, owner, support)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def owner_driver(world: World) -> Iterator[WebDriver]:
    driver = new_driver()
    try:
        assert world.owner.totp_secret
        sign_in(driver, world.server, world.owner.email, PASSWORD, world.owner.totp_secret)
        wait_path(driver, "/console/overview")
        yield driver
    finally:
        driver.quit()


def verify(world: World, key: str) -> dict[str, Any]:
    status, body = http(
        "POST",
        f"{world.server.base}/v1/licenses/verify",
        body=json.dumps({"key": key}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def test_create_an_app_and_a_license_then_revoke_it(world: World, owner_driver: WebDriver) -> None:
    driver, base = owner_driver, world.server.base
    shot(driver, "pages-01-overview")
    driver.find_element(By.LINK_TEXT, "Apps").click()
    wait_path(driver, "/console/apps")
    fill(driver, "name", "Rocket Editor")
    fill(driver, "description", "The desktop editor")
    Select(driver.find_element(By.ID, "tier")).select_by_value("pro")
    submit(driver)
    assert "App Rocket Editor created." in flash_text(driver)
    shot(driver, "pages-02-app")
    driver.get(f"{base}/console/apps")
    shot(driver, "pages-03-apps")

    driver.find_element(By.LINK_TEXT, "Licenses").click()
    wait_path(driver, "/console/licenses")
    Select(driver.find_element(By.ID, "app_id")).select_by_visible_text("Rocket Editor")
    fill(driver, "plan", "pro")
    fill(driver, "features", "export, sync")
    fill(driver, "expires_at", "2099-12-31")
    fill(driver, "issued_to", "Ada Lovelace")
    fill(driver, "issued_email", "ada@example.test")
    click_and_wait(driver, "#create-submit")
    created = re.search(r"License (LC-[A-Z0-9-]+) created", flash_text(driver))
    assert created, flash_text(driver)
    key = created.group(1)
    world.license_key = key
    assert verify(world, key)["valid"] is True
    driver.refresh()  # the verification bound nothing (no hwuid); the page shows ACTIVE
    assert driver.find_element(By.ID, "license-status").text == "ACTIVE"
    shot(driver, "pages-04-license")

    fill(driver, "reason", "refunded")
    click_and_wait(driver, "#revoke-submit")
    assert driver.find_element(By.ID, "license-status").text == "REVOKED"
    answer = verify(world, key)
    assert answer["valid"] is False and answer["reason"] == "license_revoked"

    driver.get(f"{base}/console/licenses?" + urllib.parse.urlencode({"q": "ada@example.test"}))
    assert key in driver.page_source
    shot(driver, "pages-05-licenses")


def test_create_an_api_key_see_it_once_and_use_it(world: World, owner_driver: WebDriver) -> None:
    driver, base = owner_driver, world.server.base
    driver.find_element(By.LINK_TEXT, "API keys").click()
    wait_path(driver, "/console/api-keys")
    fill(driver, "name", "deploy bot")
    Select(driver.find_element(By.ID, "role")).select_by_value("developer")
    submit(driver)
    secret = driver.find_element(By.ID, "new-api-key").get_attribute("value") or ""
    assert secret.startswith("lc_live_")
    shot(driver, "pages-06-api-key-created")
    # shown once: the page again, and the secret is gone
    driver.get(f"{base}/console/api-keys")
    assert secret not in driver.page_source
    assert not driver.find_elements(By.ID, "new-api-key")
    # a real HTTP client with the key
    status, body = http("GET", f"{base}/v1/apps", headers={"Authorization": f"Bearer {secret}"})
    assert status == 200, body
    assert [app["name"] for app in json.loads(body)["apps"]] == ["Rocket Editor"]
    driver.refresh()  # its "last used" is now set
    shot(driver, "pages-07-api-keys")


def test_the_other_pages(world: World, owner_driver: WebDriver) -> None:
    driver, base = owner_driver, world.server.base
    driver.get(f"{base}/console/signing-keys")
    old_kid = driver.find_element(By.CSS_SELECTOR, "dl.facts dd code").text
    click_and_wait(driver, "main form button")
    assert "New signing key" in flash_text(driver)
    assert old_kid in driver.page_source  # now retiring, still in the JWKS
    shot(driver, "pages-08-signing-keys")
    driver.get(f"{base}/console/audit")
    assert "Chain intact" in driver.find_element(By.ID, "chain-status").text
    assert "license.revoke" in driver.page_source
    shot(driver, "pages-09-audit-log")
    driver.get(f"{base}/console/users")
    fill(driver, "email", "new.person@example.test")
    fill(driver, "display_name", "New Person")
    submit(driver)
    link = driver.find_element(By.ID, "setup-link").get_attribute("value") or ""
    assert link.startswith(f"{base}/console/setup/")
    shot(driver, "pages-10-users")
    # a customer without licenses: the erasure runs (second factor still recent) and says so
    driver.get(f"{base}/console/customers")
    fill(driver, "erase-email", "nobody.here@example.test")
    fill(driver, "erase-confirm", "Nobody.Here@example.test")
    click_and_wait(driver, "main form button.danger, main form input.danger")
    assert "Erased: 0 license(s)" in flash_text(driver)
    shot(driver, "pages-12-customers")
    driver.get(f"{base}/console/overview")
    shot(driver, "pages-01-overview")  # again, now with figures and events


def test_support_cannot_see_or_use_the_api_keys_page(world: World) -> None:
    base = world.server.base
    driver = new_driver()
    try:
        assert world.support.totp_secret
        sign_in(driver, world.server, world.support.email, PASSWORD, world.support.totp_secret)
        wait_path(driver, "/console/overview")
        nav = driver.find_element(By.CSS_SELECTOR, "nav[aria-label=Main]")
        links = [a.text for a in nav.find_elements(By.TAG_NAME, "a")]
        assert "Licenses" in links and "API keys" not in links and "Users" not in links
        driver.get(f"{base}/console/api-keys")
        assert "403" in driver.title or "403" in driver.page_source
        shot(driver, "pages-11-support-refused")
        # a direct POST with this session's valid CSRF token: refused, nothing made
        driver.get(f"{base}/console/account")
        token = driver.find_element(By.CSS_SELECTOR, "meta[name=csrf-token]").get_attribute(
            "content"
        )
        form = {"csrf_token": token or "", "name": "sneaky", "role": "owner", "app_id": ""}
        status, _ = http(
            "POST",
            f"{base}/console/api-keys",
            body=urllib.parse.urlencode({**form, "environment": "live"}).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": cookie_header(driver),
                "Referer": f"{base}/console/account",
            },
            no_redirect=True,
        )
        assert status == 403
        # the same request without the token is refused as a CSRF failure (the token mattered)
        status_no_token, _ = http(
            "POST",
            f"{base}/console/licenses/{world.license_key}/suspend",
            body=b"",
            headers={"Cookie": cookie_header(driver), "Referer": f"{base}/console/account"},
            no_redirect=True,
        )
        assert status_no_token == 400
    finally:
        driver.quit()
