"""The gateway over HTTP, in one run: wrk on loopback against four setups.

    (a) the upstream directly (nginx `return 200`)
    (b) our gateway as a pure proxy (a public path)
    (c) our gateway gating with a warm token (a licensed path, token verified before)
    (d) Debian's nginx proxy_pass to the same upstream

Each setup is measured twice: throughput (``--connections`` open connections) and
latency (one connection: the p50 there is the time one request costs, undiluted by
queueing). Setups are interleaved over ``--rounds`` rounds and the median kept, so
a noisy neighbour on a shared machine hits all of them alike.

    .venv/bin/python benchmarks/gateway/run.py [--server gunicorn|uvicorn|both]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import httpx
import jwt

from flask_licensechain.core.contract import ALGORITHM, build_claims
from flask_licensechain.core.keys import SigningKey

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ISSUER = "https://licenses.bench"
AUDIENCE = "app_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def make_token(workdir: Path) -> tuple[Path, str]:
    key = SigningKey.generate()
    jwks = workdir / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.jwk()]}))
    claims = build_claims(
        issuer=ISSUER, license_id="lic_bench", app_id=AUDIENCE, seller_tier="enterprise",
        plan="pro", features=["reports"], license_exp=None, hw_bound=False,
        now=int(time.time()),
    )  # fmt: skip
    token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
    return jwks, token


def gateway_config(workdir: Path, jwks: Path, upstream: str, args: argparse.Namespace) -> Path:
    path = workdir / "gateway.toml"
    path.write_text(
        f"""
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "{jwks}"
{f'denylist_url = "{args.redis_url}"' if args.redis_url else ""}

[[rules]]
path = "/public/**"
public = true

[[rules]]
path = "/licensed/**"
features = ["reports"]

[gateway]
upstream = "{upstream}"
workers = {args.workers}
threads = {args.threads}
access_log = {str(not args.no_access_log).lower()}
"""
    )
    return path


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    #: CPU time the gateway's processes spent per request (None for nginx setups).
    cpu_us: float | None = None


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (gunicorn's workers)."""
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        raise ValueError(f"cannot read a wrk latency: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str, connections: int, seconds: int, headers: dict[str, str], pid: int | None = None
) -> Sample:
    cpu_before = tree_cpu_seconds(pid) if pid else 0.0
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_us = None
    if pid:
        cpu_us = (tree_cpu_seconds(pid) - cpu_before) * 1e6 / max(1, requests)
    return Sample(rps, p50, p99, int(non.group(1)) if non else 0, cpu_us)


def median_sample(samples: list[Sample]) -> Sample:
    cpu = [s.cpu_us for s in samples if s.cpu_us is not None]
    return Sample(
        statistics.median(s.rps for s in samples),
        statistics.median(s.p50_ms for s in samples),
        statistics.median(s.p99_ms for s in samples),
        sum(s.non_2xx for s in samples),
        statistics.median(cpu) if cpu else None,
    )


Setups = dict[str, tuple[str, dict[str, str], int | None]]


def measure(setups: Setups, args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    """Each setup (url, headers, pid whose CPU counts) under wrk, interleaved over
    ``args.rounds`` rounds: medians of the throughput and of the 1-connection runs."""
    throughput: dict[str, list[Sample]] = {name: [] for name in setups}
    latency: dict[str, list[Sample]] = {name: [] for name in setups}
    for round_no in range(args.rounds):
        # All throughput runs, then all latency runs: a 1-connection run never starts
        # in the wake of a saturating run of the same server.
        for name, (url, headers, pid) in setups.items():
            throughput[name].append(wrk(url, args.connections, args.seconds, headers, pid))
        for name, (url, headers, pid) in setups.items():
            time.sleep(1)
            latency[name].append(wrk(url, 1, args.seconds, headers, pid))
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    return {
        name: {
            "throughput": median_sample(throughput[name]).__dict__,
            "latency_1conn": median_sample(latency[name]).__dict__,
        }
        for name in setups
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--server", choices=["gunicorn", "uvicorn", "both"], default="gunicorn")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="denylist of the gating setup (mirrored in-process over pub/sub); '' for none",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2

    workdir = Path(tempfile.mkdtemp(prefix="lc-gw-bench-"))
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    upstream_port, proxy_port = free_port(), free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        Template((HERE / "nginx.conf.template").read_text()).substitute(
            WORKDIR=workdir, UPSTREAM_PORT=upstream_port, PROXY_PORT=proxy_port
        )
    )
    jwks, token = make_token(workdir)
    upstream = f"http://127.0.0.1:{upstream_port}"
    config = gateway_config(workdir, jwks, upstream, args)
    servers = ["gunicorn", "uvicorn"] if args.server == "both" else [args.server]
    auth = {"Authorization": f"Bearer {token}"}

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            process(["nginx", "-p", str(workdir), "-c", str(conf)], workdir / "nginx.log")
        )
        wait_for(f"{upstream}/")
        setups: Setups = {
            "a": (f"{upstream}/hello", {}, None),
            "d": (f"http://127.0.0.1:{proxy_port}/hello", {}, None),
        }
        for server in servers:
            port = free_port()
            gateway = stack.enter_context(
                process(
                    [
                        str(BIN / "licensechain-gateway"),
                        "--config",
                        str(config),
                        "--server",
                        server,
                        "--bind",
                        f"127.0.0.1:{port}",
                    ],
                    workdir / f"gateway-{server}.log",
                    # The access log goes to the log file, as it would to a collector.
                )
            )
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/_licensechain/ready")
            suffix = "" if len(servers) == 1 else f"-{server}"
            setups["b" + suffix] = (f"{base}/public/hello", {}, gateway.pid)
            setups["c" + suffix] = (f"{base}/licensed/hello", auth, gateway.pid)
            # Warm: the token verified once per worker, pools filled.
            for _ in range(50):
                assert httpx.get(f"{base}/licensed/hello", headers=auth).status_code == 200

        results = measure(setups, args)
    report(results, servers, args)
    print(f"denylist: {args.redis_url or 'none'}; access log: {not args.no_access_log}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


LABELS = {
    "a": "(a) upstream directly",
    "b": "(b) gateway, pure proxy",
    "c": "(c) gateway, gating, warm token",
    "d": "(d) nginx proxy_pass",
}


def report(results: dict[str, dict[str, dict[str, Any]]], servers: list[str],
           args: argparse.Namespace) -> None:  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load} on {os.cpu_count()} CPUs")
    print(
        f"wrk -t1, {args.connections} connections (throughput) and 1 connection (latency), "
        f"{args.seconds}s x {args.rounds} rounds, medians; gateway: {args.workers} workers"
        + (f", {args.threads} threads each" if "gunicorn" in servers else "")
    )
    head = f"{'setup':42} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{head} | {'1-conn p50 ms':>13} {'non-2xx':>8} {'gw CPU us/req':>13}")
    for name, data in results.items():
        label = LABELS[name[0]] + (name[1:].replace("-", " [") + "]" if len(name) > 1 else "")
        t, lat = data["throughput"], data["latency_1conn"]
        non = int(t["non_2xx"] + lat["non_2xx"])
        cpu = f"{t['cpu_us']:13.0f}" if t["cpu_us"] is not None else f"{'-':>13}"
        print(
            f"{label:42} {t['rps']:9.0f} {t['p50_ms']:8.2f} {t['p99_ms']:8.2f} | "
            f"{lat['p50_ms']:13.3f} {non:8d} {cpu}"
        )
    a = results["a"]
    d = results["d"]
    for server in servers:
        suffix = "" if len(servers) == 1 else f"-{server}"
        b, c = results["b" + suffix], results["c" + suffix]
        ratio_cb = c["throughput"]["rps"] / b["throughput"]["rps"]
        added = c["latency_1conn"]["p50_ms"] - a["latency_1conn"]["p50_ms"]
        ratio_cd = c["throughput"]["rps"] / d["throughput"]["rps"]
        print(f"\n[{server}]")
        print(f"(c)/(b) throughput       = {ratio_cb:.3f}   (target >= 0.9: "
              f"{'met' if ratio_cb >= 0.9 else 'NOT met'})")  # fmt: skip
        print(f"p50 added by (c) over (a) = {added:.3f} ms (target <= 1 ms: "
              f"{'met' if added <= 1.0 else 'NOT met'})")  # fmt: skip
        print(f"(c)/(d) throughput       = {ratio_cd:.3f}")
        # On a machine shared with other work, req/s swings with the neighbours; the CPU
        # the gateway spends per request does not, and its inverse is the idle-machine ratio.
        cpu_b, cpu_c = b["throughput"]["cpu_us"], c["throughput"]["cpu_us"]
        print(f"(c)/(b) by CPU per request = {cpu_b / cpu_c:.3f}   ({cpu_b:.0f} vs {cpu_c:.0f} us)")


if __name__ == "__main__":
    sys.exit(main())
