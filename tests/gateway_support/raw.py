"""Raw HTTP/1.1 over a socket: for request targets and framings no client library sends."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    head: str
    body: bytes
    everything: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> RawResponse:
    """Send ``data`` as is, read until the server closes (``Connection: close`` is advised)."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    everything = b"".join(chunks)
    head, _, body = everything.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    status = int(status_line.split(" ")[1]) if status_line.startswith("HTTP/") else 0
    return RawResponse(status, head.decode("latin-1"), body, everything)


def get(port: int, target: str, headers: dict[str, str] | None = None) -> RawResponse:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return raw_request(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
