"""The client address used for per-IP rate limits and verification metadata.

It is Werkzeug's ``request.remote_addr``: the peer of the WSGI server. Behind a reverse
proxy, wrap the app in ``werkzeug.middleware.proxy_fix.ProxyFix`` with the number of proxies
you trust; reading ``X-Forwarded-For`` here without that count would let any client pick
its own rate-limit bucket.
"""

from __future__ import annotations

from flask import request

UNKNOWN_CLIENT = "unknown"


def client_ip() -> str:
    return request.remote_addr or UNKNOWN_CLIENT
