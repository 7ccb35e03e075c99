"""The business pages' stylesheet, served from ``pages/static/`` at
``<console>/pages-static/<file>`` (``console.pages_static``) and linked from each page's
``head`` block. The Content-Security-Policy allows only same-origin stylesheets."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from flask import Response, send_from_directory

from ..blueprint import bp

STATIC_DIR: Final = Path(__file__).with_name("static")


@bp.get("/pages-static/<path:filename>")
def pages_static(filename: str) -> Response:
    return send_from_directory(STATIC_DIR, filename, max_age=3600)
