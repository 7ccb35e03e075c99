"""The API reference page: ``GET {prefix}/docs``, Swagger UI on ``{prefix}/openapi.json``.

Swagger UI 5 (it renders OpenAPI 3.1) is served from the copy packaged in ``swagger-ui-py``
(``pip install 'flask-licensechain[docs]'``), never from a CDN: the page, its script and its
stylesheet all come from this origin. ``LICENSECHAIN_API_DOCS`` switches it; the default
(``None``) serves it while ``app.debug`` is on and answers 404 otherwise.

The page carries its own Content-Security-Policy (W3C CSP Level 3), with no inline script
and no ``eval``: ``script-src 'self'`` (the bundle and ``licensechain-docs.js``, which reads
the document's URL from a ``data-`` attribute), ``style-src 'self'`` (Swagger UI sets its
inline styles through the DOM, which CSP allows), ``img-src 'self' data:`` (its icons),
``connect-src 'self'`` (the document and "Try it out", against this API only), and nothing
else; it may not be framed. ``tests/test_api_docs.py`` renders it in headless Chromium and
finds no violation.
Swagger UI's online validator is off, so the page contacts no other host.

It is a blueprint of its own (``licensechain_docs``), not an API operation: it is not in
the OpenAPI document.
"""

from __future__ import annotations

import importlib.util
from html import escape
from pathlib import Path
from typing import Final

from flask import Blueprint, Flask, Response, current_app, send_file, url_for

from ..config import Settings
from ..core.errors import ConfigError, NotFound
from ..state import get_issuer_state
from .http import finish_response, render_licensechain_error

DOCS_BLUEPRINT_NAME: Final = "licensechain_docs"
BUNDLE_PACKAGE: Final = "swagger_ui"
INSTALL_HINT: Final = "pip install 'flask-licensechain[docs]'"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
#: the only files served from the bundle, with their media types
BUNDLE_ASSETS: Final = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
INIT_SCRIPT_NAME: Final = "licensechain-docs.js"
INIT_SCRIPT: Final = """\
"use strict";
(function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.getAttribute("data-spec-url"),
    domNode: node,
    deepLinking: true,
    validatorUrl: null,
  });
})();
"""
_PAGE: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LicenseChain API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec}"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""
_ASSET_MAX_AGE: Final = 3600

docs_bp = Blueprint(DOCS_BLUEPRINT_NAME, __name__)
docs_bp.after_request(finish_response)


def bundle_dir() -> Path | None:
    """Swagger UI's packaged ``static`` folder, or None when ``swagger-ui-py`` is missing.
    Found without importing the package (its import pulls in YAML and Jinja loaders)."""
    spec = importlib.util.find_spec(BUNDLE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if static.is_dir() else None


def check_docs_setting(settings: Settings) -> None:
    """Run before anything starts: ``ConfigError`` when ``LICENSECHAIN_API_DOCS`` is true
    and the bundle is not installed."""
    if settings.api_docs and bundle_dir() is None:
        raise ConfigError(f"LICENSECHAIN_API_DOCS needs Swagger UI: {INSTALL_HINT}")


def register_docs(app: Flask, settings: Settings) -> None:
    """Add the page at ``{prefix}/docs`` unless ``LICENSECHAIN_API_DOCS`` is false."""
    if settings.api_docs is False:
        return
    app.register_blueprint(docs_bp, url_prefix=settings.url_prefix.rstrip("/") + "/docs")


def _enabled() -> Path:
    """The bundle folder when the page is on for this app; else ``NotFound``."""
    wanted = get_issuer_state().settings.api_docs
    if not (wanted or (wanted is None and current_app.debug)):
        raise NotFound()
    static = bundle_dir()
    if static is None:
        raise NotFound(f"The API docs page needs Swagger UI: {INSTALL_HINT}")
    return static


docs_bp.register_error_handler(NotFound, render_licensechain_error)


@docs_bp.get("")
def page() -> Response:
    """The Swagger UI page of this app's OpenAPI document."""
    _enabled()
    asset = "licensechain_docs.asset"
    html = _PAGE.format(
        css=escape(url_for(asset, name="swagger-ui.css")),
        icon=escape(url_for(asset, name="favicon-32x32.png")),
        spec=escape(url_for("licensechain.openapi")),
        bundle=escape(url_for(asset, name="swagger-ui-bundle.js")),
        init=escape(url_for(asset, name=INIT_SCRIPT_NAME)),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@docs_bp.get("/assets/<name>")
def asset(name: str) -> Response:
    """One of the listed bundle files, or the page's own script; 404 for anything else."""
    static = _enabled()
    if name == INIT_SCRIPT_NAME:
        response = Response(INIT_SCRIPT, mimetype="text/javascript")
    elif name in BUNDLE_ASSETS:
        response = send_file(
            static / name, mimetype=BUNDLE_ASSETS[name], max_age=_ASSET_MAX_AGE, conditional=True
        )
    else:
        raise NotFound()
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
