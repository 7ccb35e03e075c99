"""A "legacy" HTTP service that knows nothing about licenses: Python's stdlib only.

It is meant to listen on loopback behind ``licensechain-gateway``, which checks each
request's license and tells the service who the licensee is in ``X-License-*``
headers (and strips any such header a client tried to send itself).

    python examples/legacy_service/service.py --port 8001

Routes:
    GET  /status           public: is the service up
    GET  /reports          any valid license: the list of reports
    GET  /reports/export   the "export" feature: a CSV export
    POST /reports/export   the "export" feature: echoes how many bytes it received

Every request body is read to its end or refused (400, 411) with the connection closed:
on a kept-alive connection, a body left unread would be parsed as the next request.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPORTS = [
    {"id": 1, "name": "Monthly revenue"},
    {"id": 2, "name": "Active seats"},
]


class Handler(BaseHTTPRequestHandler):
    server_version = "LegacyService/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, so the gateway's pooled connections are reused

    def do_GET(self) -> None:
        if self._read_body(allowed=False) is None:
            return
        path = self.path.split("?", 1)[0]
        if path == "/status":
            self._json(200, {"status": "up"})
        elif path == "/reports":
            self._json(200, {"licensee": self._licensee(), "reports": REPORTS})
        elif path == "/reports/export":
            rows = "\n".join(f"{r['id']},{r['name']}" for r in REPORTS)
            self._send(200, f"id,name\n{rows}\n".encode(), "text/csv")
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        received = self._read_body(allowed=True)
        if received is None:
            return
        if self.path.split("?", 1)[0] == "/reports/export":
            self._json(200, {"licensee": self._licensee(), "received_bytes": received})
        else:
            self._json(404, {"error": "not_found"})

    def _read_body(self, *, allowed: bool) -> int | None:
        """Read the body to its end and return its size; None when it was refused.

        ``http.server`` reads no body by itself. A GET that carries one, a chunked body
        (which it cannot parse) or a bad length is refused, and the connection closed.
        """
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(411, "send a Content-Length")
            return None
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            self._refuse(400, "bad Content-Length")
            return None
        length = int(text)
        if length and not allowed:
            self._refuse(400, "this method takes no body")
            return None
        received = 0
        while received < length:  # read in chunks: uploads may be large
            chunk = self.rfile.read(min(65536, length - received))
            if not chunk:
                self.close_connection = True
                return None
            received += len(chunk)
        return received

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True
        self.send_response(status)
        body = json.dumps({"error": "invalid_request", "message": message}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _licensee(self) -> dict[str, Any]:
        """Set by the gateway after it verified the license; never trust them without it."""
        return {
            "license": self.headers.get("X-License-Subject"),
            "app": self.headers.get("X-License-App"),
            "plan": self.headers.get("X-License-Plan"),
            "features": self.headers.get("X-License-Features"),
            "request_id": self.headers.get("X-Request-ID"),
        }

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the gateway writes the access log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"legacy service on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
