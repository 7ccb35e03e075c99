"""``{prefix}/docs``: the OpenAPI document rendered by Swagger UI from the packaged bundle
(``swagger-ui-py``), never a CDN, under a CSP of its own that allows nothing but this
origin's scripts; ``LICENSECHAIN_API_DOCS`` switches it (default: on in debug only)."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from issuer_support import Issuer, close_issuer, error_body, make_issuer

from flask_licensechain.api.openapi import openapi_document
from flask_licensechain.config import Settings
from flask_licensechain.core.errors import ConfigError


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Issuer] = []

    def factory(*, debug: bool = False, **options: Any) -> Issuer:
        issuer = make_issuer(tmp_path / str(len(made)), **options)
        issuer.app.debug = debug
        made.append(issuer)
        return issuer

    yield factory
    for issuer in made:
        close_issuer(issuer)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.links: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True
        if tag == "link":
            self.links.append(dict(attrs)["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


def _csp(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in value.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def test_on_in_debug_off_otherwise_by_default(make: Any) -> None:
    assert make(debug=True).client.get("/v1/docs").status_code == 200
    off = make(debug=False).client.get("/v1/docs")
    error_body(off, 404, "not_found")


@pytest.mark.parametrize(("debug", "setting", "status"), [(False, True, 200), (True, False, 404)])
def test_the_setting_beats_debug(make: Any, debug: bool, setting: bool, status: int) -> None:
    assert make(debug=debug, api_docs=setting).client.get("/v1/docs").status_code == status


def test_the_page_loads_only_this_origin_s_scripts_under_its_csp(make: Any) -> None:
    issuer = make(api_docs=True)
    page = issuer.client.get("/v1/docs")
    assert page.mimetype == "text/html"
    csp = _csp(page.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval, no other host
    assert csp["style-src"] == ["'self'"]  # no inline <style> either
    assert csp["connect-src"] == ["'self'"]  # the document and "try it out": this API only
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert not any("http" in source for sources in csp.values() for source in sources)
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    parsed = _Page()
    parsed.feed(page.get_data(as_text=True))
    assert parsed.inline == [] and parsed.handlers == []
    sources = [script["src"] or "" for script in parsed.scripts]
    assert len(sources) == 2
    for url in [*sources, *parsed.links]:
        assert url.startswith("/v1/docs/"), url  # same origin, never a CDN
        asset = issuer.client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert asset.mimetype in ("text/javascript", "text/css", "image/png"), url


def test_the_bundle_is_the_packaged_swagger_ui_5(make: Any) -> None:
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    served = make(api_docs=True).client.get("/v1/docs/assets/swagger-ui-bundle.js").get_data()
    assert served == (static / "swagger-ui-bundle.js").read_bytes()
    # Swagger UI 5 renders OpenAPI 3.1, the version of our document.
    assert openapi_document()["openapi"].startswith("3.1")
    assert re.search(rb'"5\.\d+\.\d+"', served)


def test_the_page_points_swagger_ui_at_this_app_s_document(make: Any) -> None:
    issuer = make(api_docs=True, url_prefix="/api")
    page = issuer.client.get("/api/docs").get_data(as_text=True)
    assert 'data-spec-url="/api/openapi.json"' in page
    script = issuer.client.get("/api/docs/assets/licensechain-docs.js").get_data(as_text=True)
    assert "data-spec-url" in script and "validatorUrl: null" in script
    assert issuer.client.get("/api/openapi.json").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/docs/assets/../openapi.json",
        "/v1/docs/assets/%2e%2e%2fcore.py",
        "/v1/docs/assets/swagger-ui.js.map",
        "/v1/docs/assets/LICENSE",
        "/v1/docs/assets/",
    ],
)
def test_only_the_listed_assets_are_served(make: Any, path: str) -> None:
    response = make(api_docs=True).client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/json"


def test_the_page_is_not_an_api_operation(make: Any) -> None:
    issuer = make(api_docs=True)
    document = issuer.client.get("/v1/openapi.json").get_json()
    assert not any(path.startswith("/v1/docs") for path in document["paths"])


def test_asking_for_the_page_without_the_bundle_names_the_extra(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "swagger_ui" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"flask-licensechain\[docs\]"):
        make(api_docs=True)
    # The debug default does not stop the app: the page says what to install.
    answer = make(debug=True).client.get("/v1/docs")
    assert "flask-licensechain[docs]" in error_body(answer, 404, "not_found")["message"]


@pytest.mark.slow
def test_swagger_ui_renders_the_document_in_chromium_under_the_csp(make: Any) -> None:
    """A real browser: every operation rendered, and no CSP violation or failed request
    in its console (a blocked script, style, image or fetch is reported there)."""
    import shutil
    import threading

    from werkzeug.serving import make_server

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are needed (.ci/run installs them)")
        pytest.skip("chromium or chromedriver is missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    issuer = make(api_docs=True)
    server = make_server("127.0.0.1", 0, issuer.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/v1/docs")
        WebDriverWait(browser, 60).until(
            lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) > 10
        )
        rendered = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert "/v1/licenses/verify" in {text.replace("\u200b", "") for text in rendered}
        # Open one operation: its parameters, schemas and highlighted examples render too.
        browser.find_elements(By.CSS_SELECTOR, ".opblock-summary")[0].click()
        WebDriverWait(browser, 30).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock.is-open .responses-wrapper")
        )
        models = browser.find_elements(By.CSS_SELECTOR, ".models-control")
        if models:  # the schemas section
            models[0].click()
        problems = [
            entry["message"]
            for entry in browser.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING")
        ]
        assert problems == [], problems
    finally:
        browser.quit()
        server.shutdown()


@pytest.mark.parametrize(("value", "expected"), [("on", True), ("0", False), ("", None)])
def test_the_setting_takes_the_usual_spellings(value: str, expected: bool | None) -> None:
    assert Settings.from_mapping({"LICENSECHAIN_API_DOCS": value}).api_docs is expected
    with pytest.raises(ConfigError, match="LICENSECHAIN_API_DOCS"):
        Settings.from_mapping({"LICENSECHAIN_API_DOCS": "maybe"})
