"""The console in a real browser: Debian's headless Chromium driven by Selenium, against
the server running as its own process (``flask run`` on a free loopback port).

Flows: the first owner set up from the link the CLI printed; TOTP enrolment (the code is
computed from the secret the page shows); sign out and in with password and TOTP; a passkey
registered with Chromium's virtual authenticator (WebDriver WebAuthn API), then used
alone, as second factor and as the re-check before a sensitive action; an account set up
with a passkey alone; a backup code used once, refused the second time; another
session revoked and signed out; one sign-in driven by the keyboard alone. Screenshots of
each page go to docs/console-screenshots/ (linked from the README); every page they show
passes ``browser_support.page_problems``: a name on each control, no id used twice, no
Content-Security-Policy refusal in the browser's log. The server, the browser and the page
helpers are ``browser_support``'s; this server re-checks the second factor after
``MFA_MAX_AGE`` seconds.

Without Chromium and chromedriver these tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser_support import (
    ConsoleServer,
    fill,
    flash_text,
    need_browser,
    new_driver,
    page_problems,
    shot,
    sign_in_password,
    staleness_of,
    submit,
    totp_code,
    wait_path,
)

PASSWORD = "a long and unusual passphrase"
MFA_MAX_AGE = 2

pytestmark = pytest.mark.slow

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - dev extra
    webdriver = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    need_browser()
    running = ConsoleServer(
        tmp_path_factory.mktemp("console-browser"),
        env={
            # Sensitive actions re-check the second factor after this many seconds (10 min in
            # production): the re-check flow runs without a long wait.
            "LICENSECHAIN_CONSOLE_MFA_MAX_AGE": str(MFA_MAX_AGE),
            # These flows have always run with the public endpoints rate limited (the default).
            "LICENSECHAIN_RATELIMIT_ENABLED": "true",
        },
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def drivers() -> Iterator[Callable[[], WebDriver]]:
    need_browser()
    made: list[WebDriver] = []

    def make() -> WebDriver:
        made.append(new_driver())
        return made[-1]

    try:
        yield make
    finally:
        for driver in made:
            driver.quit()


#: where a sign-in lands: the Overview page, now that the business pages exist
HOME = "/console/overview"


def signed_in_home(driver: WebDriver) -> None:
    """Wait for the home page a sign-in lands on, then open the account page."""
    wait_path(driver, HOME)
    driver.get(driver.current_url.split("/console/")[0] + "/console/account")
    wait_path(driver, "/console/account")


class Owner:
    email = "owner@example.test"
    secret = ""
    backup_codes: list[str] = []


OWNER = Owner()


def sign_out(driver: WebDriver) -> None:
    driver.find_element(By.CSS_SELECTOR, "header form button").click()
    wait_path(driver, "/console/login")


def owner_password_step(driver: WebDriver, server: ConsoleServer) -> None:
    """The owner's email and password, up to the second-factor page."""
    sign_in_password(driver, server, OWNER.email, PASSWORD)


def test_first_owner_setup_and_totp(
    server: ConsoleServer, drivers: Callable[[], WebDriver]
) -> None:
    made = server.cli("users", "create", "--email", OWNER.email, "--role", "owner")
    link = made["setupLink"]
    assert link.startswith(f"{server.base}/console/setup/")
    driver = drivers()
    driver.get(link)
    fill(driver, "display_name", "Ada Owner")
    fill(driver, "password", PASSWORD)
    fill(driver, "confirm", PASSWORD)
    shot(driver, "01-setup")
    submit(driver)
    wait_path(driver, "/console/account/totp")
    OWNER.secret = driver.find_element(By.ID, "totp-secret").text
    assert re.fullmatch(r"[A-Z2-7]{32}", OWNER.secret)
    assert (
        driver.find_element(By.CSS_SELECTOR, "img.qr")
        .get_attribute("src")
        .startswith("data:image/svg+xml")
    )
    shot(driver, "02-totp-enrol")
    fill(driver, "code", totp_code(OWNER.secret))
    submit(driver)
    codes = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#backup-codes code")]
    assert len(codes) == 10
    OWNER.backup_codes = codes
    shot(driver, "03-backup-codes")
    driver.find_element(By.LINK_TEXT, "I have stored them").click()
    signed_in_home(driver)
    assert "Ada Owner" in driver.find_element(By.TAG_NAME, "header").text
    shot(driver, "04-account")
    # Sign out, then in again with password and TOTP.
    sign_out(driver)
    shot(driver, "05-login")
    owner_password_step(driver, server)
    shot(driver, "06-second-factor")
    fill(driver, "code", totp_code(OWNER.secret, ahead=1))
    submit(driver)
    signed_in_home(driver)


def add_authenticator(driver: WebDriver) -> None:
    """Chromium's virtual platform authenticator: resident keys, user verified."""
    authenticator = VirtualAuthenticatorOptions()
    authenticator.protocol = VirtualAuthenticatorOptions.Protocol.CTAP2
    authenticator.transport = VirtualAuthenticatorOptions.Transport.INTERNAL
    authenticator.has_resident_key = True
    authenticator.has_user_verification = True
    authenticator.is_user_verified = True
    driver.add_virtual_authenticator(authenticator)


def test_enrol_with_a_passkey_alone(
    server: ConsoleServer, drivers: Callable[[], WebDriver]
) -> None:
    """A developer sets up the account with a passkey instead of an authenticator app."""
    link = server.cli("users", "create", "--email", "dev@example.test", "--role", "developer")[
        "setupLink"
    ]
    driver = drivers()
    add_authenticator(driver)
    driver.get(link)
    fill(driver, "display_name", "Dev Eloper")
    fill(driver, "password", PASSWORD)
    fill(driver, "confirm", PASSWORD)
    submit(driver)
    wait_path(driver, "/console/account/totp")
    fill(driver, "passkey-name", "Work laptop")
    driver.find_element(By.CSS_SELECTOR, "[data-webauthn=register]").click()
    codes = WebDriverWait(driver, 20).until(
        lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#backup-codes code")]
    )
    assert len(codes) == 10
    driver.find_element(By.LINK_TEXT, "I have stored them").click()
    signed_in_home(driver)
    assert "Work laptop" in driver.find_element(By.ID, "passkeys").text
    assert "developer" in driver.find_element(By.TAG_NAME, "header").text


def test_passkey_register_and_sign_in(
    server: ConsoleServer, drivers: Callable[[], WebDriver]
) -> None:
    driver = drivers()
    add_authenticator(driver)
    # Signed in with a backup code (this browser has no session yet).
    owner_password_step(driver, server)
    fill(driver, "code", OWNER.backup_codes[0])
    submit(driver)
    signed_in_home(driver)
    fill(driver, "passkey-name", "Laptop passkey")
    driver.find_element(By.CSS_SELECTOR, "[data-webauthn=register]").click()
    # The page reloads once the passkey is added: a node read during the navigation is
    # stale (or foreign to the new document), which only means "not yet".
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda d: "Laptop passkey" in d.find_element(By.ID, "passkeys").get_attribute("innerHTML")
    )
    assert len(driver.get_credentials()) == 1
    shot(driver, "07-passkey-added")
    # Passwordless: the passkey alone (user verified by the authenticator).
    sign_out(driver)
    driver.find_element(By.CSS_SELECTOR, "[data-webauthn=passwordless]").click()
    signed_in_home(driver)
    # As the second factor after the password.
    sign_out(driver)
    owner_password_step(driver, server)
    shot(driver, "08-second-factor-with-passkey")
    driver.find_element(By.CSS_SELECTOR, "[data-webauthn=mfa]").click()
    signed_in_home(driver)
    # A sensitive action once the check is older than the maximum age: the second factor
    # again (with the passkey), then the action.
    time.sleep(MFA_MAX_AGE + 0.5)
    new_codes = "form[action$='/account/backup-codes'] button"
    driver.find_element(By.CSS_SELECTOR, new_codes).click()
    wait_path(driver, "/console/reauth")
    assert "submit the form again" in flash_text(driver)
    shot(driver, "11-reauth")
    driver.find_element(By.CSS_SELECTOR, "[data-webauthn=reauth]").click()
    wait_path(driver, "/console/account")
    driver.find_element(By.CSS_SELECTOR, new_codes).click()
    OWNER.backup_codes = WebDriverWait(driver, 20).until(
        lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#backup-codes code")]
    )
    assert len(OWNER.backup_codes) == 10


def test_backup_code_once(server: ConsoleServer, drivers: Callable[[], WebDriver]) -> None:
    driver = drivers()
    code = OWNER.backup_codes[1]
    owner_password_step(driver, server)
    fill(driver, "code", code)
    submit(driver)
    signed_in_home(driver)
    sign_out(driver)
    owner_password_step(driver, server)
    fill(driver, "code", code)
    submit(driver)
    assert "Sign-in failed" in flash_text(driver)
    shot(driver, "10-backup-code-reused")
    assert driver.current_url.endswith("/console/login/verify")
    driver.get(f"{server.base}/console/account")
    wait_path(driver, "/console/login/verify")  # still not signed in


def test_revoke_another_session(server: ConsoleServer, drivers: Callable[[], WebDriver]) -> None:
    mine, other = drivers(), drivers()
    for driver, code in ((mine, OWNER.backup_codes[2]), (other, OWNER.backup_codes[3])):
        owner_password_step(driver, server)
        fill(driver, "code", code)
        submit(driver)
        signed_in_home(driver)
    mine.get(f"{server.base}/console/account/sessions")
    shot(mine, "09-sessions")
    rows = mine.find_elements(By.CSS_SELECTOR, "tbody tr:not(.current)")
    assert rows
    # Revoke every other session of this owner (the other browser's among them).
    while rows:
        button = rows[0].find_element(By.CSS_SELECTOR, "button")
        button.click()
        WebDriverWait(mine, 20).until(staleness_of(button))
        assert "signed out" in flash_text(mine)
        rows = mine.find_elements(By.CSS_SELECTOR, "tbody tr:not(.current)")
    other.get(f"{server.base}/console/account")
    wait_path(other, "/console/login")
    mine.get(f"{server.base}/console/account")
    wait_path(mine, "/console/account")
    assert page_problems(mine) == [], mine.current_url


def _tab_to(driver: WebDriver, predicate: Callable[[Any], bool], limit: int = 40) -> Any:
    """Press Tab until the focused element satisfies ``predicate``; it must be reachable."""
    body = driver.find_element(By.TAG_NAME, "body")
    for _ in range(limit):
        active = driver.switch_to.active_element
        if predicate(active):
            return active
        webdriver.ActionChains(driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"not reachable by keyboard: {body.text[:200]}")


def test_sign_in_with_the_keyboard_alone(
    server: ConsoleServer, drivers: Callable[[], WebDriver]
) -> None:
    driver = drivers()
    driver.get(f"{server.base}/console/login")
    keys = webdriver.ActionChains(driver)
    # The email field has the focus on arrival; type, Tab, type, Enter.
    assert driver.switch_to.active_element.get_attribute("id") == "email"
    keys.send_keys(OWNER.email, Keys.TAB, PASSWORD, Keys.ENTER).perform()
    wait_path(driver, "/console/login/verify")
    assert driver.switch_to.active_element.get_attribute("id") == "code"
    webdriver.ActionChains(driver).send_keys(OWNER.backup_codes[4], Keys.ENTER).perform()
    wait_path(driver, HOME)
    # Every control is reachable: Tab to the sessions link and follow it with Enter.
    link = _tab_to(driver, lambda e: e.text == "Sessions")
    link.send_keys(Keys.ENTER)
    wait_path(driver, "/console/account/sessions")
    button = _tab_to(driver, lambda e: e.text == "Sign out")
    button.send_keys(Keys.ENTER)
    wait_path(driver, "/console/login")


def test_the_page_check_finds_what_it_looks_for(
    server: ConsoleServer, drivers: Callable[[], WebDriver]
) -> None:
    """``page_problems`` (run by every ``shot``) can fail: a clean page passes, then each
    fault put into it by WebDriver is reported: a button with neither text nor
    ``aria-label``, an ``<input type=button>`` and a textarea without a label, an id used
    twice, and an inline script the Content-Security-Policy refuses."""
    driver = drivers()
    driver.get(f"{server.base}/console/login")
    assert page_problems(driver) == []
    driver.execute_script(
        """
        const form = document.querySelector('main form');
        form.insertAdjacentHTML('beforeend',
          '<button id="bare-button" type="button"></button>'
          + '<button type="button" aria-label="Close">x</button>'
          + '<input id="bare-input-button" type="button" value="Go">'
          + '<textarea id="bare-notes"></textarea>'
          + '<span id="email"></span>');
        const script = document.createElement('script');
        script.textContent = 'document.title = "ran";';
        document.body.appendChild(script);
        """
    )
    problems = page_problems(driver)
    assert problems[:4] == [
        "unlabelled: bare-button",
        "unlabelled: bare-input-button",
        "unlabelled: bare-notes",
        "duplicate id: email",
    ], problems
    assert len(problems) == 5 and "Content Security Policy" in problems[4], problems
    assert driver.title != "ran"
