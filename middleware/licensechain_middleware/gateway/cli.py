"""``licensechain-gateway``: run the license gateway in front of a service.

    licensechain-gateway --config gateway.toml [--mode proxy|authz]
                         [--server gunicorn|uvicorn] [--workers N]
                         [--bind 127.0.0.1:8080] [--check]

``--mode authz`` serves the forward-auth endpoint (``authz.py``) for nginx,
Caddy, Traefik or Envoy instead of proxying.

Command-line options beat ``LICENSECHAIN_GATEWAY_*`` variables, which beat the
file. ``--check`` validates the configuration (and the key source it names) and
exits: 0 when usable, 2 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from flask_licensechain.core.errors import LicenseChainError

from .config import CONFIG_ENV, GatewayConfig, load_config, resolve_path
from .metrics_env import MULTIPROC_ENV
from .servers import run_gunicorn, run_uvicorn
from .settings import ENV_PREFIX, MODES, SERVERS, GatewayConfigError

EXIT_BAD_CONFIG = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="licensechain-gateway",
        description="License-gating reverse proxy in front of an HTTP service.",
    )
    p.add_argument("--config", "-c", help=f"TOML file (default: ${CONFIG_ENV})")
    p.add_argument(
        "--mode", choices=MODES, help="proxy (gate and forward) or authz (forward-auth endpoint)"
    )
    p.add_argument("--server", choices=SERVERS, help="gunicorn (WSGI) or uvicorn (ASGI)")
    p.add_argument("--workers", "-w", type=int, help="worker processes")
    p.add_argument("--threads", type=int, help="threads per gunicorn gthread worker")
    p.add_argument("--bind", "-b", help="HOST:PORT to listen on")
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # CLI options become environment overrides so every worker process sees them too.
    for name in ("mode", "server", "workers", "threads", "bind"):
        value = getattr(args, name)
        if value is not None:
            os.environ[ENV_PREFIX + name.upper()] = str(value)
    path = args.config or os.environ.get(CONFIG_ENV)
    if path:
        os.environ[CONFIG_ENV] = resolve_path(path)
    try:
        config = load_config()
        if not args.check:
            _multiprocess_metrics(config)
        # Build the app once here, as each worker will, so a bad key source or rule
        # fails now with its reason rather than as a worker that will not boot.
        _build_once(config)
    except (GatewayConfigError, ValueError, OSError) as exc:
        return _config_error(str(exc))
    except LicenseChainError as exc:
        # Operator's console: the detail (which file, which key) is the useful part.
        return _config_error(exc.detail or exc.description)
    if args.check:
        print(f"licensechain-gateway: {config.source} is valid", file=sys.stderr)
        return 0
    if config.gateway.server == "gunicorn":
        run_gunicorn(config.gateway)
    else:
        run_uvicorn(config.gateway)
    return 0


def _config_error(message: str) -> int:
    print(f"licensechain-gateway: configuration error: {message}", file=sys.stderr)
    return EXIT_BAD_CONFIG


def _build_once(config: GatewayConfig) -> None:
    """Build the app as a worker would: reads JWKS files, compiles the rules."""
    from .wsgi import build_app

    build_app(config).close()


def _multiprocess_metrics(config: GatewayConfig) -> None:
    """With several workers, metrics are aggregated through a shared directory.

    Must run before ``prometheus_client`` is first imported in this process.
    """
    if not config.gateway.metrics or config.gateway.workers < 2 or os.environ.get(MULTIPROC_ENV):
        return
    directory = tempfile.mkdtemp(prefix="licensechain-gateway-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    atexit.register(shutil.rmtree, directory, True)
    # prometheus_client picks its value class when first imported, and importing
    # flask_licensechain (for its core) already loaded it with the single-process class:
    # pick again, so the metric children the workers make write to the shared directory.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
