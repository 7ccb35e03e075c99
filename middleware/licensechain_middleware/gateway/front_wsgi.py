"""The gateway's outermost WSGI layer: its own endpoints, request ids, the access log.

    WSGIFront -> LicenseGate -> WSGIProxy -> upstream

The request id (the client's sane ``X-Request-ID`` or a fresh one) is fixed here,
before the gate, so the gate's refusals, the upstream and the access log all see
the same one; it is added to every response that lacks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flask_licensechain.core.gate import environ_request_id

from .bodies import CHUNKED_KEY
from .metrics import EngineCounters
from .observe import RECORD_KEY, RequestRecord
from .ops import OpsEndpoints
from .outcome import apply_decision

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


log = logging.getLogger("licensechain.gateway")


class _Finishing:
    """Passes the body through and finishes the record when the server closes it."""

    __slots__ = ("_body", "_done")

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class WSGIFront:
    def __init__(
        self,
        app: WSGIApplication,
        ops: OpsEndpoints,
        readiness: Callable[[], Mapping[str, bool]],
        counters: EngineCounters | None = None,
        *,
        access_log: bool = True,
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.ops = ops
        self.readiness = readiness
        self.counters = counters
        self.access_log = access_log
        self._rid_header = request_id_header
        self._rid_lower = request_id_header.lower()
        self._rid_key = "HTTP_" + request_id_header.upper().replace("-", "_")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if self.ops.handles(path):
            checks = self._readiness() if self.ops.wants_readiness(method, path) else None
            answer = self.ops.answer(method, path, checks)
            start_response(answer.status_line, answer.headers)
            return [] if method == "HEAD" else [answer.body]
        if "HTTP_TRANSFER_ENCODING" in environ:
            environ[CHUNKED_KEY] = True
        rid = environ_request_id(environ, self._rid_key)
        record = RequestRecord(method, path, request_id=rid)
        environ[RECORD_KEY] = record

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            record.status = int(status[:3])
            if not any(name.lower() == self._rid_lower for name, _ in headers):
                headers.append((self._rid_header, rid))
            return start_response(status, headers, exc_info)

        def done() -> None:
            apply_decision(environ, record)
            record.finish(log_enabled=self.access_log)
            if self.counters is not None:
                self.counters.sync()

        try:
            body = self.app(environ, capture)
        except BaseException:
            record.status = record.status or 500
            done()
            raise
        return _Finishing(body, done)

    def close(self) -> None:
        close = getattr(self.app, "close", None)
        if close is not None:
            close()

    def _readiness(self) -> Mapping[str, bool]:
        try:
            return self.readiness()
        except Exception:
            log.exception("readiness check failed")
            return {"gate": False}
