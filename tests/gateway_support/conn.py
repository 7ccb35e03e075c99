"""One client connection spoken to byte by byte: requests as sent, responses as framed."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    head: str
    body: bytes


class Closed(Exception):
    """The server closed the connection before (or instead of) a response."""


class RawConnection:
    """A keep-alive HTTP/1.1 connection; ``read_response`` honours the response's framing."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed(self.buffer.decode("latin-1"))
        self.buffer += chunk

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_response(self, method: str = "GET") -> Response:
        while True:
            while b"\r\n\r\n" not in self.buffer:
                self._fill()
            head_bytes, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            head = head_bytes.decode("latin-1")
            status = int(head.split(" ", 2)[1])
            if status != 100:
                break
        fields = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304):
            return Response(status, head, b"")
        if "chunked" in fields.get("transfer-encoding", "").lower():
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._line()
            while self._line():
                pass  # trailers
            return Response(status, head, b"".join(parts))
        if "content-length" in fields:
            return Response(status, head, self._take(int(fields["content-length"])))
        body = self.buffer
        try:
            while True:
                self._fill()
        except Closed:
            pass
        body, self.buffer = self.buffer, b""
        return Response(status, head, body)

    def request(
        self, method: str, target: str, headers: tuple[str, ...] = (), body: bytes = b""
    ) -> Response:
        self.send(request_bytes(method, target, headers, body))
        return self.read_response(method)


def request_bytes(
    method: str, target: str, headers: tuple[str, ...] = (), body: bytes = b""
) -> bytes:
    """A request as sent on the wire; ``headers`` are ``"Name: value"`` lines, framing included."""
    lines = [f"{method} {target} HTTP/1.1", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
