"""Security headers on every response of the license server (OWASP Secure Headers Project).

One ``after_request`` hook on the *app*, not on a blueprint, so that the API, the console and
the app's own error pages all get them:

- ``X-Content-Type-Options: nosniff`` (no MIME sniffing of JSON into HTML or script);
- ``Referrer-Policy: no-referrer`` (URLs that carry ids never leak to another site);
- ``X-Frame-Options: DENY`` (no framing: clickjacking);
- ``Strict-Transport-Security: max-age=<hsts_max_age>; includeSubDomains`` (RFC 6797) when
  the request came over HTTPS, as Werkzeug sees it (``request.is_secure``: behind a proxy,
  after ``ProxyFix`` with ``x_proto=1``), or on every response with ``LICENSECHAIN_HSTS``.
  RFC 6797 §7.2: a host sends it over secure transport; over plain HTTP a browser ignores
  it, so sending it there is only for a TLS-terminating proxy the app cannot see.

A header a view already set (a page's own CSP or framing policy) is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from flask import Response, request

from ..config import Settings

STATIC_HEADERS: Final = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
HSTS_HEADER: Final = "Strict-Transport-Security"


def security_headers_hook(settings: Settings) -> Callable[[Response], Response]:
    """The app's ``after_request`` hook for ``settings`` (``hsts``, ``hsts_max_age``)."""
    hsts_value = f"max-age={settings.hsts_max_age}; includeSubDomains"
    always_hsts = settings.hsts

    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        present = {name.lower() for name, _ in headers}
        for name, value in STATIC_HEADERS:
            if name.lower() not in present:
                headers.add(name, value)
        if (always_hsts or request.is_secure) and HSTS_HEADER.lower() not in present:
            headers.add(HSTS_HEADER, hsts_value)
        return response

    return add_security_headers
