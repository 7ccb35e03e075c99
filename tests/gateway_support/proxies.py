"""nginx and Caddy as test processes, running the configurations shipped in
``examples/nginx_forward_auth/`` with only their ports (and the upstream) changed.

Each runs unprivileged from its own temporary directory (config, pid, logs, caches),
listens on a free loopback port and is stopped by pid. A missing binary skips the
test with the reason, or fails it under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port, require_service

from .processes import REPO, VENV_BIN, Server, run_server

EXAMPLE = REPO / "examples" / "nginx_forward_auth"
#: The ports written in the shipped files.
NGINX_PORT, CADDY_PORT, AUTHZ_PORT, SERVICE_PORT = 8080, 8082, 8081, 8001
CACHE_MARK = "# [cache] "


@dataclass(frozen=True)
class Ports:
    authz: int
    upstream: int


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        require_service(f"{name} is not installed (apt-get install -y nginx-light caddy)")
    assert path is not None
    return path


def _ported(text: str, listen_from: int, listen_to: int, ports: Ports) -> str:
    for old, new in (
        (listen_from, listen_to),
        (AUTHZ_PORT, ports.authz),
        (SERVICE_PORT, ports.upstream),
    ):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    return text


def nginx_conf(ports: Ports, listen: int, *, cache: bool = False) -> str:
    """The shipped ``nginx.conf``; ``cache`` uncomments its decision-cache lines."""
    text = (EXAMPLE / "nginx.conf").read_text(encoding="utf-8")
    if cache:
        assert CACHE_MARK in text
        text = text.replace(CACHE_MARK, "")
    return _ported(text, NGINX_PORT, listen, ports)


def caddyfile(ports: Ports, listen: int) -> str:
    text = (EXAMPLE / "Caddyfile").read_text(encoding="utf-8")
    return _ported(text, CADDY_PORT, listen, ports)


@contextlib.contextmanager
def nginx_server(conf: str) -> Iterator[Server]:
    """nginx with ``conf`` in a fresh directory, its ``-p`` prefix. Started as root, nginx
    runs its workers as ``nobody``, who must reach that directory: it is made 0755 under
    ``/tmp`` (pytest's own temporary directories are 0700) and removed afterwards."""
    binary = require_binary("nginx")
    directory = Path(tempfile.mkdtemp(prefix="lc-nginx-test-"))
    directory.chmod(0o755)
    try:
        path = directory / "nginx.conf"
        path.write_text(conf, encoding="utf-8")
        port = _listen_port(conf)
        with run_server([binary, "-p", str(directory), "-c", str(path)], port) as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def caddy_server(caddyfile_text: str, directory: Path) -> Iterator[Server]:
    binary = require_binary("caddy")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "Caddyfile"
    path.write_text(caddyfile_text, encoding="utf-8")
    port = _listen_port(caddyfile_text)
    # Caddy keeps its state under $HOME / $XDG_*: all of it goes to the test's directory.
    env = {
        "HOME": str(directory),
        "XDG_DATA_HOME": str(directory / "data"),
        "XDG_CONFIG_HOME": str(directory / "config"),
    }
    args = [binary, "run", "--adapter", "caddyfile", "--config", str(path)]
    with run_server(args, port, env) as server:
        yield server


def _listen_port(conf: str) -> int:
    """The first loopback port the file listens on (``listen`` or a site address)."""
    for line in conf.splitlines():
        stripped = line.strip()
        if stripped.startswith(("listen 127.0.0.1:", "http://127.0.0.1:")):
            return int(stripped.split("127.0.0.1:", 1)[1].split()[0].rstrip(";{"))
    raise AssertionError("no listen address in the configuration")


def free_ports() -> Ports:
    return Ports(authz=free_port(), upstream=free_port())


def authz_args(config: Path, port: int, server: str = "gunicorn") -> list[str]:
    """``licensechain-gateway --mode authz`` with one worker on ``port``."""
    return [
        str(VENV_BIN / "licensechain-gateway"),
        "--config",
        str(config),
        "--mode",
        "authz",
        "--server",
        server,
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
    ]
