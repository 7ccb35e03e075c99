"""The upstream URL of a request: configured base + forwarded path + raw query."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import httpx

#: Parsed upstream URLs kept per process; most traffic repeats a few paths, and a parse
#: costs more than the rest of building the upstream request. Cleared when full.
URL_CACHE_SIZE = 4096

#: Characters left as they are when re-encoding a decoded path (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class UpstreamBase:
    """A validated upstream base URL, split once."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http:// or https:// URL, got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError("upstream must not have a query or fragment")
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._urls: dict[tuple[str, str], httpx.URL] = {}

    def http_url(self, path: str, query: str) -> httpx.URL:
        """``path`` is already percent-encoded; ``query`` is the raw query string."""
        key = (path, query)
        url = self._urls.get(key)
        if url is None:
            text = self.origin + self.prefix + path
            url = httpx.URL(f"{text}?{query}" if query else text)
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[key] = url
        return url

    def websocket_url(self, path: str, query: str) -> str:
        scheme = "wss" if self.scheme == "https" else "ws"
        url = f"{scheme}://{self.netloc}{self.prefix}{path}"
        return f"{url}?{query}" if query else url


def encode_path(decoded: bytes) -> str:
    """Re-encode a once-decoded path: WSGI's text is latin-1 bytes, ASGI's is UTF-8."""
    return quote(decoded, safe=_PATH_SAFE) or "/"
