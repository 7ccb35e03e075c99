"""One pooled httpx client per process, made after the server forks its workers.

A client made in the master before ``fork`` would share sockets (and, for the
async client, an event loop) between workers, so each process makes its own on
first use and remakes it if it finds itself in a new process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
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

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive_connections,
            keepalive_expiry=self.keepalive_expiry,
        )


#: httpx's own defaults that a proxy must not add to a client's request: an
#: ``Accept-Encoding`` the client never sent would get it a body it cannot read.
_HTTPX_DEFAULT_HEADERS = ("Accept", "Accept-Encoding", "User-Agent")


def _no_cookie_jar() -> CookieJar:
    """A jar that keeps nothing: one user's ``Set-Cookie`` must never ride on the
    next user's request through the shared pooled client."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _client_options(limits: UpstreamLimits) -> dict[str, Any]:
    # trust_env=False: the upstream is configured, never redirected by *_PROXY variables.
    # follow_redirects=False: redirects are the client's business, passed through as they are.
    return {
        "timeout": limits.timeout(),
        "limits": limits.limits(),
        "trust_env": False,
        "follow_redirects": False,
        "cookies": _no_cookie_jar(),
    }


def make_sync_client(limits: UpstreamLimits) -> httpx.Client:
    client = httpx.Client(**_client_options(limits))
    for name in _HTTPX_DEFAULT_HEADERS:
        del client.headers[name]
    return client


def make_async_client(limits: UpstreamLimits) -> httpx.AsyncClient:
    client = httpx.AsyncClient(**_client_options(limits))
    for name in _HTTPX_DEFAULT_HEADERS:
        del client.headers[name]
    return client


class SyncClientHolder:
    """The process's ``httpx.Client``, (re)made lazily in the process that uses it."""

    def __init__(self, limits: UpstreamLimits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._pid = -1
        self._client: httpx.Client | None = None

    def get(self) -> httpx.Client:
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = make_sync_client(self._limits)
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None


class AsyncClientHolder:
    """The process's ``httpx.AsyncClient``, made inside the worker's event loop."""

    def __init__(self, limits: UpstreamLimits) -> None:
        self._limits = limits
        self._pid = -1
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        # One event loop per worker process: no lock needed, there is no await here.
        if self._client is None or self._pid != os.getpid():
            self._client = make_async_client(self._limits)
            self._pid = os.getpid()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            await self._client.aclose()
        self._client = None
