"""A shared harness for the console's browser tests: the issuer app as its own ``flask run``
process on a free loopback port, and Debian's headless Chromium driven by Selenium.

    server = ConsoleServer(tmp_path)          # the store may be prepared before (same file)
    driver = new_driver()
    sign_in(driver, server, email, password, totp_secret)
    shot(driver, "pages-01-overview")         # docs/console-screenshots/pages-01-overview.png

Without Chromium, chromedriver or Selenium, ``need_browser()`` skips the test, and fails it
under ``CI=true``. The server's app is ``console_server.create_app``, configured from the
environment (``LICENSECHAIN_*``, ``SECRET_KEY``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyotp
import pytest
from conftest import free_port
from issuer_support import TEST_ENCRYPTION_KEY

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "console-screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SECRET_KEY = "browser tests secret"

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - dev extra
    webdriver = None


def staleness_of(element: WebElement) -> Any:
    """A wait condition: ``element`` has left the page. Chromium answers a node of the old
    document either as stale or, during the navigation, with an inspector error ("Node with
    given id does not belong to the document"); both mean it is gone."""

    def gone(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # StaleElementReferenceException is one
            return True
        return False

    return gone


def need_browser() -> None:
    """Skip (fail under ``CI=true``) unless Selenium, Chromium and chromedriver are here."""
    missing = [] if webdriver is not None else ["selenium (pip install -e '.[dev]')"]
    missing += [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        reason = (
            "browser tests need "
            + ", ".join(missing)
            + " (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def database_url(tmp: Path) -> str:
    return f"sqlite:///{tmp}/console.db"


class ConsoleServer:
    """The console app in its own ``flask run`` process, on the store at ``database_url``;
    ``env`` adds to (or replaces) the environment below, e.g. another
    ``LICENSECHAIN_CONSOLE_MFA_MAX_AGE``."""

    def __init__(self, tmp: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://localhost:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])
            ),
            "FLASK_APP": "console_server:create_app",
            "CONSOLE_TEST_INSTANCE": str(tmp / "instance"),
            "SECRET_KEY": SECRET_KEY,
            "LICENSECHAIN_DATABASE_URL": database_url(tmp),
            "LICENSECHAIN_ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
            "LICENSECHAIN_ISSUER": f"{self.base}/v1",
            "LICENSECHAIN_CONSOLE": "true",
            "LICENSECHAIN_CONSOLE_URL": f"{self.base}/console",
            "LICENSECHAIN_RATELIMIT_ENABLED": "false",
            **(env or {}),
        }
        self.log_path = tmp / "server.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--with-threads",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/health", timeout=2):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(self.log_path.read_text()) from None
                time.sleep(0.2)

    def cli(self, *args: str) -> dict[str, Any]:
        """``flask licensechain <args> --json`` against the same store: its JSON answer (the
        command must succeed)."""
        result = subprocess.run(
            [sys.executable, "-m", "flask", "licensechain", *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def new_driver() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--host-resolver-rules=MAP localhost 127.0.0.1",
        "--password-store=basic",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_path(driver: WebDriver, path: str, timeout: float = 20) -> None:
    WebDriverWait(driver, timeout).until(lambda d: d.current_url.split("?")[0].endswith(path))


def fill(driver: WebDriver, field_id: str, text: str) -> None:
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(text)


def click_and_wait(driver: WebDriver, css: str) -> None:
    """Click the element ``css`` (a submit button) and wait for the next page."""
    button = driver.find_element(By.CSS_SELECTOR, css)
    button.click()
    WebDriverWait(driver, 20).until(staleness_of(button))


#: the submit button of the page's (first) form in ``main``
SUBMIT = "main form input[type=submit]"


def submit(driver: WebDriver) -> None:
    """Submit the page's form (``SUBMIT``) and wait for the next page."""
    click_and_wait(driver, SUBMIT)


def flash_text(driver: WebDriver) -> str:
    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, ".flash"))


#: the page's controls that nothing names (run by WebDriver, not by the page): a button
#: without text or ``aria-label``; any other input (``<input type=button>`` included), select
#: or textarea without a ``<label>`` or ``aria-label``. Hidden inputs and submit inputs (their
#: value is their name) are not counted.
_UNLABELLED_CONTROLS = """
return Array.from(document.querySelectorAll('input, select, textarea, button'))
  .filter(e => e.tagName === 'BUTTON' || !['hidden', 'submit'].includes(e.type))
  .filter(e => e.tagName === 'BUTTON'
    ? !e.textContent.trim() && !e.getAttribute('aria-label')
    : !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
  .map(e => e.id || e.name || e.outerHTML);
"""


#: ids that more than one element of the page carries (a label then names the wrong control)
_DUPLICATE_IDS = """
const ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id);
return ids.filter((id, i) => ids.indexOf(id) !== i);
"""


def page_problems(driver: WebDriver) -> list[str]:
    """Unlabelled controls (``_UNLABELLED_CONTROLS``), ids used twice, and
    Content-Security-Policy refusals logged since the last call (an inline script or style
    that slipped in): one line each, ``[]`` for a clean page."""
    problems = [f"unlabelled: {name}" for name in driver.execute_script(_UNLABELLED_CONTROLS)]
    problems += [f"duplicate id: {name}" for name in driver.execute_script(_DUPLICATE_IDS)]
    for entry in driver.get_log("browser"):
        message = entry["message"]
        if "Content Security Policy" in message or "Content-Security-Policy" in message:
            problems.append(message)
    return problems


def shot(driver: WebDriver, name: str) -> None:
    """Check the page (``page_problems``), then save a full-page screenshot as
    ``docs/console-screenshots/<name>.png``."""
    assert page_problems(driver) == [], driver.current_url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 2400)))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def totp_code(secret: str, *, ahead: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(time.time()) + ahead)


def sign_in_password(driver: WebDriver, server: ConsoleServer, email: str, password: str) -> None:
    """The sign-in's first step in the browser: email and password, up to the page that asks
    for the second factor (``/console/login/verify``)."""
    driver.get(f"{server.base}/console/login")
    fill(driver, "email", email)
    fill(driver, "password", password)
    submit(driver)
    wait_path(driver, "/console/login/verify")


def sign_in(
    driver: WebDriver, server: ConsoleServer, email: str, password: str, secret: str
) -> None:
    """The real sign-in in the browser: password, then a TOTP code."""
    sign_in_password(driver, server, email, password)
    fill(driver, "code", totp_code(secret))
    submit(driver)


def cookie_header(driver: WebDriver) -> str:
    """The browser's cookies as a ``Cookie`` header (same session, same CSRF secret)."""
    return "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    no_redirect: bool = False,
) -> tuple[int, bytes]:
    """A real HTTP request (urllib): status and body, error statuses included."""
    handlers = [_NoRedirect()] if no_redirect else []
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
