"""One pooled httpx transport per process, made after the server forks its workers.

The proxy talks to httpx's transport layer (``httpx.HTTPTransport`` /
``AsyncHTTPTransport``: the connection pool) with ``httpx.Request`` objects it
builds itself. The ``Client`` layer on top adds nothing a proxy wants, and costs:
default headers (an ``Accept-Encoding`` the client never sent would get it a body
it cannot read), a cookie jar (one user's ``Set-Cookie`` must never ride on the
next user's request), redirect and auth handling, and about a fifth of the CPU
time of each request.

A pool made in the master before ``fork`` would share sockets (and, for the
async one, an event loop) between workers, so each process makes its own on
first use and remakes it if it finds itself in a new process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class UpstreamLimits:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    write_timeout: float = 60.0
    pool_timeout: float = 5.0
    max_connections: int = 100
    max_keepalive_connections: int = 100
    keepalive_expiry: float = 30.0

    def timeout_extension(self) -> Mapping[str, Any]:
        """The per-request ``timeout`` extension httpx transports read."""
        return {
            "timeout": httpx.Timeout(
                connect=self.connect_timeout,
                read=self.read_timeout,
                write=self.write_timeout,
                pool=self.pool_timeout,
            ).as_dict()
        }

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive_connections,
            keepalive_expiry=self.keepalive_expiry,
        )


class SyncTransportHolder:
    """The process's ``httpx.HTTPTransport``, (re)made lazily in the process that uses it."""

    def __init__(self, limits: UpstreamLimits) -> None:
        self.limits = limits
        self.extensions = limits.timeout_extension()
        self._lock = threading.Lock()
        self._pid = -1
        self._transport: httpx.HTTPTransport | None = None

    def get(self) -> httpx.HTTPTransport:
        transport = self._transport
        if transport is not None and self._pid == os.getpid():
            return transport
        with self._lock:
            if self._transport is None or self._pid != os.getpid():
                # A transport never reads *_PROXY variables: the upstream is configured.
                self._transport = httpx.HTTPTransport(limits=self.limits.limits())
                self._pid = os.getpid()
            return self._transport

    def close(self) -> None:
        with self._lock:
            if self._transport is not None and self._pid == os.getpid():
                self._transport.close()
            self._transport = None


class AsyncTransportHolder:
    """The process's ``httpx.AsyncHTTPTransport``, made inside the worker's event loop."""

    def __init__(self, limits: UpstreamLimits) -> None:
        self.limits = limits
        self.extensions = limits.timeout_extension()
        self._pid = -1
        self._transport: httpx.AsyncHTTPTransport | None = None

    def get(self) -> httpx.AsyncHTTPTransport:
        # One event loop per worker process: no lock needed, there is no await here.
        if self._transport is None or self._pid != os.getpid():
            self._transport = httpx.AsyncHTTPTransport(limits=self.limits.limits())
            self._pid = os.getpid()
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None and self._pid == os.getpid():
            await self._transport.aclose()
        self._transport = None
