"""Sending one signed webhook: the HTTP client and its limits.

- Signing: Standard Webhooks (https://www.standardwebhooks.com/) with the
  ``standardwebhooks`` library: ``webhook-id`` (the event id, the same on every retry, for
  deduplication), ``webhook-timestamp`` (unix seconds of this attempt) and
  ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``; during a secret rotation's overlap,
  one signature per secret, separated by a space, as the specification allows).
- Transport: httpcore's connection pool (keep-alive) behind a network backend that checks
  every connection's destination (``ssrf.DestinationPolicy``) and connects only to a
  checked address; TLS still verifies the certificate for the URL's host name. No proxy
  from the environment, no redirect followed (a 3xx is a failed attempt).
- Limits: the whole attempt, connection and TLS included, ends after ``timeout`` seconds
  (default 10); at most 64 KiB of the answer's body is read.
- Outcome: a 2xx status is success; another status, a timeout, a refused destination or a
  connection error is a failed attempt (``AttemptResult.error`` says which, for the
  deliveries log; it never holds a secret).
"""

from __future__ import annotations

import contextvars
import logging
import ssl
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import httpcore
from standardwebhooks.webhooks import Webhook

from ..store.webhooks import AttemptRecord
from ..version import __version__
from .ssrf import DestinationPolicy, DestinationRefused

log = logging.getLogger("licensechain.webhooks")

#: the most of an answer's body read (the rest is dropped with the connection)
MAX_RESPONSE_BYTES: Final = 64 * 1024
USER_AGENT: Final = f"flask-licensechain-webhooks/{__version__}"
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "licensechain_webhook_deadline", default=None
)


@dataclass(frozen=True)
class AttemptResult:
    """One attempt: ``status_code`` (None when no answer came), ``latency_ms``, ``error``
    (None on a 2xx), ``body`` (at most 64 KiB of the answer)."""

    status_code: int | None
    latency_ms: int
    error: str | None
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def as_record(self, at: datetime) -> AttemptRecord:
        """The attempt as the deliveries log keeps it (started at ``at``)."""
        return AttemptRecord(at, self.status_code, self.latency_ms, self.error)


def signature_headers(
    event_id: str, payload: str, secrets: Iterable[bytes], at: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers of ``payload`` signed with each of ``secrets`` at ``at``."""
    signatures = " ".join(Webhook(secret).sign(event_id, at, payload) for secret in secrets)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }


def _remaining(timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write ends by the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _remaining(timeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.policy.addresses(host, port)
        except DestinationRefused as exc:
            raise httpcore.ConnectError(f"destination refused: {exc}") from None
        error: Exception | None = None
        for address in addresses:
            try:
                stream = super().connect_tcp(
                    address, port, _remaining(timeout), local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        assert error is not None
        raise error


class Sender:
    """Posts signed payloads; one connection pool shared by the worker's threads."""

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        timeout: float = 10.0,
        max_connections: int = 32,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            keepalive_expiry=30.0,
            retries=0,
            network_backend=GuardedBackend(policy),
        )

    def close(self) -> None:
        self._pool.close()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        """POST ``body`` to ``url``: the attempt's result, never an exception."""
        started = time.monotonic()
        token = _DEADLINE.set(started + self.timeout)
        try:
            return self._post(url, body, headers, started)
        finally:
            _DEADLINE.reset(token)

    def _post(
        self, url: str, body: bytes, headers: Mapping[str, str], started: float
    ) -> AttemptResult:
        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            self.policy.check_scheme(urlsplit(url).scheme)
        except DestinationRefused as exc:
            return AttemptResult(None, took(), f"destination refused: {exc}")
        request_headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", USER_AGENT),
            *headers.items(),
        ]
        limit = self.timeout
        extensions = {"timeout": {"connect": limit, "read": limit, "write": limit, "pool": limit}}
        try:
            with self._pool.stream(
                "POST", url, headers=request_headers, content=body, extensions=extensions
            ) as response:
                received = bytearray()
                for chunk in response.iter_stream():
                    received += chunk
                    if len(received) >= MAX_RESPONSE_BYTES:
                        break
                status = response.status
        except httpcore.TimeoutException:
            return AttemptResult(None, took(), f"timeout after {self.timeout:g} s")
        except (httpcore.ProtocolError, httpcore.NetworkError) as exc:
            return AttemptResult(None, took(), _short(exc) or "connection error")
        except httpcore.UnsupportedProtocol as exc:
            return AttemptResult(None, took(), _short(exc) or "unsupported URL")
        except ValueError as exc:  # a URL httpcore cannot use
            return AttemptResult(None, took(), _short(exc) or "invalid URL")
        body_seen = bytes(received[:MAX_RESPONSE_BYTES])
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return AttemptResult(status, took(), error, body_seen)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
