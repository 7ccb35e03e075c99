"""Running the gateway under gunicorn (WSGI, gevent or gthread workers) or uvicorn (ASGI).

Both build the app inside each worker process, after the fork, so every worker
has its own pooled upstream client, Redis connections and event loop.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import TYPE_CHECKING, Any

from .settings import GatewaySettings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def run_gunicorn(settings: GatewaySettings) -> None:
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    class GatewayApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                if key in self.cfg.settings:  # older gunicorn lacks some settings
                    self.cfg.set(key, value)

        def load(self) -> WSGIApplication:
            from .wsgi import create_app

            return create_app()

    if settings.worker_class == "gevent":
        # Each worker monkey-patches after the fork, when this process has imported ssl
        # (through httpx) already, and gevent warns. Nothing of ours keeps a pre-patch ssl
        # object: the workers build their app, httpx transports and SSL contexts included,
        # after the patch, through the patched module.
        warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl")
    GatewayApplication().run()


def gunicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "bind": [settings.bind],
        "workers": settings.workers,
        # gevent (the default): a greenlet per connection, so a client that sends its
        # request slowly holds a greenlet, not one of a few threads (gunicorn's docs: the
        # thread-per-request workers need a buffering proxy in front). gthread: a thread
        # per in-flight request, for running behind such a proxy.
        "worker_class": settings.worker_class,
        "threads": settings.threads,
        "graceful_timeout": int(settings.graceful_timeout),
        # gevent workers bound the wait for each request head by `keepalive` seconds,
        # counted from the end of the previous response (or from connecting).
        "keepalive": max(1, math.ceil(settings.header_timeout)),
        "accesslog": None,  # the gateway writes its own JSON access log
        "child_exit": _child_exit,
        "proc_name": "licensechain-gateway",
        # Header names with "_" are dropped (gunicorn's default since 22, stated): CGI
        # folds them into "-", so a client's X_Forwarded_Uri would read as X-Forwarded-Uri.
        "header_map": "drop",
        # gunicorn 25+ opens a control socket at one fixed path per user; two gateways
        # on one host would fight over it, and the gateway does not use it.
        "control_socket_disable": True,
    }


def _child_exit(server: Any, worker: Any) -> None:
    from . import metrics

    metrics.mark_process_dead(worker.pid)


_WS_SANSIO = "websockets-sansio"


def run_uvicorn(settings: GatewaySettings) -> None:
    import uvicorn
    import uvicorn.config

    host, port = split_bind(settings.bind)
    uvicorn.run(
        "licensechain_middleware.gateway.asgi:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        # The fastest pieces when installed (uvicorn[standard]), else the pure-Python ones.
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        # websockets' Sans-I/O implementation: uvicorn deprecates its legacy "websockets"
        # one (a warning on every start); older uvicorn releases lack the new name.
        ws=_WS_SANSIO if _WS_SANSIO in uvicorn.config.WS_PROTOCOLS else "websockets",
        lifespan="on",
        # uvicorn would believe X-Forwarded-For from loopback peers and rewrite the
        # client address; which proxies to trust is the gate's `trusted_proxies`.
        proxy_headers=False,
        access_log=False,  # the gateway writes its own JSON access log
        # The upstream's Server and Date headers are passed through; do not add a second pair.
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout),
        timeout_keep_alive=max(1, math.ceil(settings.header_timeout)),
        log_level="info",
    )
