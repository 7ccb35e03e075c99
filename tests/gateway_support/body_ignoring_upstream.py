"""An upstream that never reads a request body, as Python's ``http.server`` does on GET.

Raw sockets, HTTP/1.1 keep-alive, one thread per connection. It parses the request line
and the headers and answers at once, leaving any body on the socket, where the next
"request" is read from. Behind a proxy that reuses its connection, a body such as
``GET /reports/export HTTP/1.1\\r\\n...`` is then served as a request of its own.

    python tests/gateway_support/body_ignoring_upstream.py --port P

* ``/reports/export`` -> a CSV (``id,name``...), the prize of a smuggled request
* anything else     -> ``{"path": ..., "method": ...}``

Each request it parsed is printed on stdout (``SEEN <method> <path>``). Like
``http.server`` it stops after a request that carried ``Connection: close``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading

CSV = b"id,name\n1,Monthly revenue\n2,Active seats\n"


def _answer(conn: socket.socket, method: str, path: str) -> None:
    if path == "/reports/export":
        body, kind = CSV, b"text/csv"
    else:
        body, kind = json.dumps({"method": method, "path": path}).encode(), b"application/json"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (kind, len(body))
    conn.sendall(head if method == "HEAD" else head + body)


def _serve(conn: socket.socket) -> None:
    buffer = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) != 3:
                return
            method, target, _ = parts
            path = target.split("?", 1)[0]
            print(f"SEEN {method} {path}", flush=True)
            _answer(conn, method, path)  # the body, if any, stays in `buffer` / the socket
            if b"\r\nconnection: close" in head.lower():
                return  # as http.server does: no further request on this connection


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", args.port))
    print(f"listening on {args.port}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
