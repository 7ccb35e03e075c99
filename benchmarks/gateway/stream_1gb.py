"""1 GiB each way through the gateway, with the worker's memory watched.

nginx serves a 1 GiB (sparse) file and swallows a 1 GiB upload; the gateway (one
worker, a public path) sits in front. The worker's resident set is sampled while the
bytes pass; a streaming proxy's peak stays flat, a buffering one would grow by a GiB.

    .venv/bin/python benchmarks/gateway/stream_1gb.py [--server gunicorn|uvicorn] [--gib 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from string import Template

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, HERE, free_port, make_token, process, wait_for

MiB = 1024 * 1024

NGINX_EXTRA = """
    server {
        listen 127.0.0.1:${BIG_PORT};
        location /big { alias ${WORKDIR}/big.bin; }
        location /sink { client_max_body_size 0; return 200 "swallowed\\n"; }
    }
"""


def rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def worker_of(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0]) if children else master


class Sampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--server", choices=["gunicorn", "uvicorn"], default="gunicorn")
    p.add_argument("--gib", type=float, default=1.0)
    args = p.parse_args()
    size = int(args.gib * 1024 * MiB)
    workdir = Path(tempfile.mkdtemp(prefix="lc-gw-stream-"))
    os.chmod(workdir, 0o755)  # nginx workers (nobody) read the file
    try:
        big = workdir / "big.bin"
        with big.open("wb") as f:
            f.truncate(size)
        big.chmod(0o644)
        upstream_port, proxy_port, big_port, gw_port = (free_port() for _ in range(4))
        template = (HERE / "nginx.conf.template").read_text().rstrip().rstrip("}")
        conf = workdir / "nginx.conf"
        conf.write_text(
            Template(template + NGINX_EXTRA + "}\n").substitute(
                WORKDIR=workdir,
                UPSTREAM_PORT=upstream_port,
                PROXY_PORT=proxy_port,
                BIG_PORT=big_port,
            )
        )
        jwks, _ = make_token(workdir)
        config = workdir / "gateway.toml"
        config.write_text(
            f'issuer = "x"\nverify_audience = false\njwks_file = "{jwks}"\n'
            'default_policy = "public"\n\n[gateway]\n'
            f'upstream = "http://127.0.0.1:{big_port}"\nworkers = 1\nread_timeout = 60.0\n'
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                process(["nginx", "-p", str(workdir), "-c", str(conf)], workdir / "nginx.log")
            )
            gateway = [str(BIN / "licensechain-gateway"), "--config", str(config),
                       "--server", args.server, "--bind", f"127.0.0.1:{gw_port}"]  # fmt: skip
            stack.enter_context(process(gateway, workdir / "gateway.log"))
            base = f"http://127.0.0.1:{gw_port}"
            wait_for(f"{base}/_licensechain/ready")
            master = _pid_listening(gw_port)
            pid = worker_of(master)
            httpx.get(f"{base}/big", headers={"Range": "bytes=0-1023"})
            report("download", size, pid, lambda: _download(f"{base}/big"))
            report("upload", size, pid, lambda: _upload(f"{base}/sink", size))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _pid_listening(port: int) -> int:
    """The gateway's master process: the one whose socket listens on ``port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inode = parts[9]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return int(proc.name)
    raise LookupError(f"nothing listens on {port}")


def _download(url: str) -> int:
    received = 0
    with httpx.stream("GET", url, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1024 * 1024):
            received += len(chunk)
    return received


def _upload(url: str, size: int) -> int:
    block = b"\0" * MiB

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield block

    response = httpx.post(url, content=body(), timeout=120)
    response.raise_for_status()
    return size


def report(name: str, size: int, pid: int, transfer: object) -> None:
    assert callable(transfer)
    before = rss(pid)
    started = time.perf_counter()
    with Sampler(pid) as sampler:
        moved = transfer()
    seconds = time.perf_counter() - started
    assert moved == size, (moved, size)
    print(
        f"{name:8} {size / MiB:6.0f} MiB in {seconds:5.1f} s ({size / MiB / seconds:5.0f} MiB/s); "
        f"worker RSS {before / MiB:.1f} MiB before, peak {sampler.peak / MiB:.1f} MiB "
        f"(+{(sampler.peak - before) / MiB:.1f} MiB)"
    )


if __name__ == "__main__":
    sys.exit(main())
