"""The issuer URL (``iss``) and the absolute JWKS URL for the host a request came in on."""

from __future__ import annotations

from typing import Any, Final

from flask import request

#: distinct hosts remembered per app (the Host header is client input: the memo is bounded)
MAX_HOSTS: Final = 64


class BaseUrls:
    """``iss`` and the absolute JWKS URL of the current request's host.

    With ``LICENSECHAIN_ISSUER`` set, ``iss`` is that; otherwise it is the API's base URL
    (scheme, host, script root and the blueprint's ``prefix``). Answers are memoized per
    host, for at most ``MAX_HOSTS`` hosts.
    """

    def __init__(self, issuer: str | None, prefix: str) -> None:
        self._issuer = issuer
        self._prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._by_root: dict[tuple[Any, ...], tuple[str, str]] = {}

    def for_request(self) -> tuple[str, str]:
        """``(iss, jwks_uri)`` for the current request; needs a request context."""
        environ = request.environ
        # What Werkzeug builds url_root from, as a cheap memo key (ProxyFix rewrites these).
        memo = (
            environ.get("wsgi.url_scheme"),
            environ.get("HTTP_HOST"),
            environ.get("SERVER_NAME"),
            environ.get("SERVER_PORT"),
            environ.get("SCRIPT_NAME"),
        )
        found = self._by_root.get(memo)
        if found is None:
            base = request.url_root.rstrip("/") + self._prefix
            found = (self._issuer or base, base + "/licenses/jwks")
            if len(self._by_root) < MAX_HOSTS:
                self._by_root[memo] = found
        return found
