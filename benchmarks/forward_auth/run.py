"""Forward auth over HTTP, in one run: wrk on loopback against five setups.

    (a) the upstream directly (nginx `return 200`)
    (d) nginx proxy_pass to it
    (e) nginx + auth_request to `licensechain-gateway --mode authz`, no decision cache
        (on gunicorn, and on uvicorn: httptools and uvloop when installed)
    (f) the same with the shipped 1 s decision cache
    (c) our Python gateway gating (`licensechain-gateway`, proxy mode)

(e) and (f) run the shipped `examples/nginx_forward_auth/nginx.conf` with its ports
changed (and its cache lines uncommented for (f)). (c), (e) and (f) send the same warm
token to a path that needs a feature. Setups are interleaved over `--rounds` rounds and
the median kept; each is measured with `--connections` connections (req/s, p50, p99) and
with one (p50).

    .venv/bin/python benchmarks/forward_auth/run.py [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from string import Template
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "gateway"))

from run import (  # type: ignore[import-not-found]  # noqa: E402 - benchmarks/gateway/run.py
    AUDIENCE,
    BIN,
    ISSUER,
    Setups,
    free_port,
    make_token,
    measure,
    process,
    wait_for,
)

LABELS = {
    "a": "(a) upstream directly",
    "d": "(d) nginx proxy_pass",
    "e": "(e) nginx + auth_request, no cache",
    "u": "(e) the same, authz on uvicorn",
    "f": "(f) nginx + auth_request, 1 s cache",
    "c": "(c) Python gateway, gating",
}


def gate_toml(jwks: Path, args: argparse.Namespace, gateway: str) -> str:
    denylist = f'denylist_url = "{args.redis_url}"' if args.redis_url else ""
    return f"""
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_file = "{jwks}"
{denylist}
trusted_proxies = ["127.0.0.1/32"]

[[rules]]
path = "/public/**"
public = true

[[rules]]
path = "/licensed/**"
features = ["reports"]

[gateway]
workers = {args.workers}
threads = {args.threads}
access_log = {str(not args.no_access_log).lower()}
{gateway}
"""


def shipped_nginx(workdir: Path, listen: int, authz: int, upstream: int, cache: bool) -> Path:
    text = (REPO / "examples" / "nginx_forward_auth" / "nginx.conf").read_text()
    if cache:
        text = text.replace("# [cache] ", "")
    for old, new in ((8080, listen), (8081, authz), (8001, upstream)):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    directory = workdir / f"nginx-{listen}"
    directory.mkdir()
    directory.chmod(0o755)
    conf = directory / "nginx.conf"
    conf.write_text(text)
    return conf


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="of the gateway and of the authz")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="'' for no denylist")
    p.add_argument("--only", default="adeufc", help="setups to run, e.g. 'de'")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="lc-fa-bench-"))
    workdir.chmod(0o755)  # nginx workers (nobody, when started as root) read below it
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    upstream_port, proxy_port, authz_port = free_port(), free_port(), free_port()
    e_port, f_port, c_port = free_port(), free_port(), free_port()
    uvicorn_port, u_port = free_port(), free_port()
    base_conf = workdir / "nginx.conf"
    base_conf.write_text(
        Template((HERE.parent / "gateway" / "nginx.conf.template").read_text()).substitute(
            WORKDIR=workdir, UPSTREAM_PORT=upstream_port, PROXY_PORT=proxy_port
        )
    )
    jwks, token = make_token(workdir)
    upstream = f"http://127.0.0.1:{upstream_port}"
    authz_toml = workdir / "authz.toml"
    authz_toml.write_text(gate_toml(jwks, args, 'mode = "authz"'))
    gateway_toml = workdir / "gateway.toml"
    gateway_toml.write_text(gate_toml(jwks, args, f'upstream = "{upstream}"'))
    auth = {"Authorization": f"Bearer {token}"}
    gateway_bin = str(BIN / "licensechain-gateway")

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            process(["nginx", "-p", str(workdir), "-c", str(base_conf)], workdir / "nginx.log")
        )
        authz = stack.enter_context(
            process(
                [gateway_bin, "--config", str(authz_toml), "--bind", f"127.0.0.1:{authz_port}"],
                workdir / "authz.log",
            )
        )
        authz_uvicorn = stack.enter_context(
            process(
                [
                    gateway_bin,
                    "--config",
                    str(authz_toml),
                    "--server",
                    "uvicorn",
                    "--bind",
                    f"127.0.0.1:{uvicorn_port}",
                ],
                workdir / "authz-uvicorn.log",
            )
        )
        gateway = stack.enter_context(
            process(
                [gateway_bin, "--config", str(gateway_toml), "--bind", f"127.0.0.1:{c_port}"],
                workdir / "gateway.log",
            )
        )
        for port, authz_at, cache in (
            (e_port, authz_port, False),
            (u_port, uvicorn_port, False),
            (f_port, authz_port, True),
        ):
            conf = shipped_nginx(workdir, port, authz_at, upstream_port, cache)
            stack.enter_context(
                process(["nginx", "-p", str(conf.parent), "-c", str(conf)], workdir / "n.log")
            )
        wait_for(f"{upstream}/")
        wait_for(f"http://127.0.0.1:{authz_port}/_licensechain/ready")
        wait_for(f"http://127.0.0.1:{uvicorn_port}/_licensechain/ready")
        wait_for(f"http://127.0.0.1:{c_port}/_licensechain/ready")
        setups: Setups = {
            "a": (f"{upstream}/licensed/hello", {}, None),
            "d": (f"http://127.0.0.1:{proxy_port}/licensed/hello", {}, None),
            "e": (f"http://127.0.0.1:{e_port}/licensed/hello", auth, authz.pid),
            "u": (f"http://127.0.0.1:{u_port}/licensed/hello", auth, authz_uvicorn.pid),
            "f": (f"http://127.0.0.1:{f_port}/licensed/hello", auth, authz.pid),
            "c": (f"http://127.0.0.1:{c_port}/licensed/hello", auth, gateway.pid),
        }
        setups = {k: v for k, v in setups.items() if k in args.only}
        for name, (url, headers, _) in setups.items():
            for _ in range(50):  # warm: the token verified in every worker, pools filled
                response = httpx.get(url, headers=headers)
                assert response.status_code == 200, (name, response.status_code, response.text)

        results = measure(setups, args)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load} on {os.cpu_count()} CPUs")
    print(
        f"wrk -t1, {args.connections} connections and 1 connection, {args.seconds}s x "
        f"{args.rounds} rounds, medians; gateway and authz: {args.workers} workers x "
        f"{args.threads} threads; denylist: {args.redis_url or 'none'}; "
        f"access log: {not args.no_access_log}"
    )
    head = f"{'setup':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{head} | {'1-conn p50 ms':>13} {'non-2xx':>8} {'py CPU us/req':>13}")
    for name, data in results.items():
        t, lat = data["throughput"], data["latency_1conn"]
        non = int(t["non_2xx"] + lat["non_2xx"])
        cpu = f"{t['cpu_us']:13.0f}" if t["cpu_us"] is not None else f"{'-':>13}"
        print(
            f"{LABELS[name]:40} {t['rps']:9.0f} {t['p50_ms']:8.2f} {t['p99_ms']:8.2f} | "
            f"{lat['p50_ms']:13.3f} {non:8d} {cpu}"
        )

    def rps(name: str) -> float:
        value: float = results[name]["throughput"]["rps"]
        return value

    print()
    if "e" in results and "c" in results:
        ratio = rps("e") / rps("c")
        verdict = "met" if ratio >= 2 else "NOT met"
        print(f"(e)/(c) throughput = {ratio:.2f}   (target >= 2: {verdict})")
    if "u" in results and "c" in results:
        ratio = rps("u") / rps("c")
        verdict = "met" if ratio >= 2 else "NOT met"
        print(f"(e on uvicorn)/(c) throughput = {ratio:.2f}   (target >= 2: {verdict})")
    if "u" in results and "d" in results:
        added = results["u"]["latency_1conn"]["p50_ms"] - results["d"]["latency_1conn"]["p50_ms"]
        print(f"p50 added by (e on uvicorn) over (d) = {added:.3f} ms")
    if "u" in results and "c" in results:
        u_cpu, c_cpu = results["u"]["throughput"]["cpu_us"], results["c"]["throughput"]["cpu_us"]
        print(f"Python CPU per request: authz on uvicorn {u_cpu:.0f} us, gateway (c) "
              f"{c_cpu:.0f} us (ratio {c_cpu / u_cpu:.2f})")  # fmt: skip
    if "f" in results and "d" in results:
        ratio = rps("f") / rps("d")
        verdict = "met" if ratio >= 0.5 else "NOT met"
        print(f"(f)/(d) throughput = {ratio:.2f}   (target >= 0.5: {verdict})")
    if "e" in results and "d" in results:
        added = results["e"]["latency_1conn"]["p50_ms"] - results["d"]["latency_1conn"]["p50_ms"]
        print(f"p50 added by (e) over (d) = {added:.3f} ms (target <= 1 ms: "
              f"{'met' if added <= 1 else 'NOT met'})")  # fmt: skip
        print(f"(e)/(d) throughput = {rps('e') / rps('d'):.3f}")
    if "f" in results and "e" in results:
        print(f"(f)/(e) throughput = {rps('f') / rps('e'):.2f}")
    if "a" in results and "d" in results:
        print(f"(d)/(a) throughput = {rps('d') / rps('a'):.3f}")
    if "e" in results and "c" in results:
        e_cpu, c_cpu = results["e"]["throughput"]["cpu_us"], results["c"]["throughput"]["cpu_us"]
        print(f"Python CPU per request: authz (e) {e_cpu:.0f} us, gateway (c) {c_cpu:.0f} us "
              f"(ratio {c_cpu / e_cpu:.2f})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
