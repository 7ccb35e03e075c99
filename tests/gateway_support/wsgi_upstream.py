"""A WSGI upstream for the gateway tests, under Werkzeug's server: like many WSGI servers it
reads ``_`` in a header name as ``-`` (``X_Real_IP`` becomes ``HTTP_X_REAL_IP``).

Every request is answered with the JSON of its ``HTTP_*`` environ keys.

Run: ``python tests/gateway_support/wsgi_upstream.py PORT``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import run_simple


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps(seen).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


if __name__ == "__main__":
    run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
