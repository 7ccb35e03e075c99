"""Running the gateway under gunicorn (WSGI, gthread workers) or uvicorn (ASGI).

Both build the app inside each worker process, after the fork, so every worker
has its own pooled upstream client, Redis connections and event loop.
"""

from __future__ import annotations

import importlib.util
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

    GatewayApplication().run()


def gunicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "bind": [settings.bind],
        "workers": settings.workers,
        # gthread: a thread per in-flight request, so a slow upstream or a long
        # download holds one thread, not a whole worker; keep-alive is supported.
        "worker_class": "gthread",
        "threads": settings.threads,
        "graceful_timeout": int(settings.graceful_timeout),
        "keepalive": 5,
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


def run_uvicorn(settings: GatewaySettings) -> None:
    import uvicorn

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
        ws="websockets",
        lifespan="on",
        # uvicorn would believe X-Forwarded-For from loopback peers and rewrite the
        # client address; which proxies to trust is the gate's `trusted_proxies`.
        proxy_headers=False,
        access_log=False,  # the gateway writes its own JSON access log
        # The upstream's Server and Date headers are passed through; do not add a second pair.
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout),
        log_level="info",
    )
