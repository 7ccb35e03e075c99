"""HTTP benchmark of the gate: one Flask route, three gates, gunicorn + wrk on loopback.

    .venv/bin/pip install -e '.[bench]'      # flask-jwt-extended
    .venv/bin/python benchmarks/http_gate/run.py [--duration 10] [--rounds 3]

Variants, each served by gunicorn with the same worker class and worker count:
  ungated       the route with no check (the ceiling);
  licensechain  ``@requires_feature("export")``, integrator mode (JWKS file), Redis denylist,
                the same token on every request (warm);
  jwt_extended  flask-jwt-extended ``@jwt_required()``, RS256 public key, a
                ``token_in_blocklist_loader`` doing a Redis ``EXISTS``, plus the same feature check.

The variants run interleaved for ``--rounds`` rounds and the median req/s of each is
reported, with the ratios gated/ungated (target >= 0.9) and ours/flask-jwt-extended
(target >= 1.2). Beside req/s, the gunicorn workers' CPU time per request (from /proc) gives
the same ratios in a form that a busy machine hardly disturbs: on a shared 2-core box, req/s
swings with whatever else runs. Everything binds 127.0.0.1 on free ports and stops by itself;
the results also go to benchmarks/.work/http_gate/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from flask_licensechain.core.contract import build_claims
from flask_licensechain.core.keys import SigningKey

HERE = Path(__file__).resolve().parent
WORK = HERE.parent / ".work" / "http_gate"
ISSUER = "https://licenses.bench.test"
AUDIENCE = "app_bench"
ROUTE = "/reports/export"
VARIANTS = ("ungated", "licensechain", "jwt_extended")
GATED_TARGET = 0.9
VS_JWT_EXTENDED_TARGET = 1.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_keys(work: Path) -> tuple[SigningKey, dict[str, str]]:
    """One RSA key, written as a JWKS (ours) and as PEM files (flask-jwt-extended)."""
    key = SigningKey.generate()
    (work / "jwks.json").write_text(json.dumps({"keys": [key.jwk()]}))
    (work / "public.pem").write_bytes(
        key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private = work / "private.pem"
    private.write_bytes(
        key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    return key, {
        "BENCH_JWKS_FILE": str(work / "jwks.json"),
        "BENCH_PUBLIC_KEY_FILE": str(work / "public.pem"),
        "BENCH_ISSUER": ISSUER,
        "BENCH_AUDIENCE": AUDIENCE,
    }


def license_token(key: SigningKey) -> str:
    claims = build_claims(
        issuer=ISSUER,
        license_id="lic_bench",
        app_id=AUDIENCE,
        seller_tier="enterprise",  # 24 h token: outlives the run
        plan="pro",
        features=["export"],
        license_exp=None,
        hw_bound=False,
        now=int(time.time()),
    )
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


def jwt_extended_token(env: dict[str, str], work: Path) -> str:
    """A token minted by flask-jwt-extended itself, so its decoder accepts it as its own."""
    os.environ.update(env, BENCH_PRIVATE_KEY_FILE=str(work / "private.pem"))
    sys.path.insert(0, str(HERE))
    from apps import create_app
    from flask_jwt_extended import create_access_token

    app = create_app("jwt_extended")
    with app.app_context():
        token: str = create_access_token(
            identity="lic_bench",
            additional_claims={"iss": ISSUER, "aud": AUDIENCE, "features": ["export"]},
            expires_delta=False,
        )
    return token


class Server:
    """``gunicorn 'apps:create_app("<variant>")'`` on a free loopback port."""

    def __init__(self, variant: str, env: dict[str, str], args: argparse.Namespace) -> None:
        self.variant = variant
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            str(HERE),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "--log-level",
            "warning",
            f'apps:create_app("{variant}")',
        ]
        self.process = subprocess.Popen(command, env={**os.environ, **env})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ROUTE}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn for {self.variant} exited early")
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn for {self.variant} did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def check_gate(server: Server, token: str | None) -> None:
    """Before measuring: the token passes and, for gated variants, no token is refused."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ok = httpx.get(server.url, headers=headers, timeout=5)
    if ok.status_code != 200:
        raise RuntimeError(f"{server.variant}: token refused: {ok.status_code} {ok.text}")
    if token:
        refused = httpx.get(server.url, timeout=5)
        if refused.status_code != 401:
            raise RuntimeError(f"{server.variant}: no token but HTTP {refused.status_code}")


@dataclass(frozen=True)
class Measurement:
    req_per_s: float
    #: CPU seconds the gunicorn workers spent per request, in microseconds: unlike req/s it
    #: hardly moves when other processes compete for the cores.
    cpu_us_per_req: float


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # stat fields 14 and 15
    return total / ticks


def run_wrk(
    url: str, token: str | None, duration: float, args: argparse.Namespace
) -> tuple[float, int]:
    """(req/s, number of requests) of one wrk run."""
    command = [
        "wrk",
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    if re.search(r"Non-2xx or 3xx responses", output):
        raise RuntimeError(f"wrk saw error responses:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    if rate is None or count is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    return float(rate.group(1)), int(count.group(1))


def measure(
    variant: str, token: str | None, env: dict[str, str], args: argparse.Namespace
) -> Measurement:
    server = Server(variant, env, args)
    try:
        server.wait_ready()
        check_gate(server, token)
        run_wrk(server.url, token, args.warmup, args)  # every worker sees the token once
        pids = worker_pids(server.process.pid)
        cpu_before = cpu_seconds(pids)
        rate, count = run_wrk(server.url, token, args.duration, args)
        cpu = cpu_seconds(pids) - cpu_before
        return Measurement(rate, cpu / max(1, count) * 1e6)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per server")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; median")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    WORK.mkdir(parents=True, exist_ok=True)
    key, env = write_keys(WORK)
    env["BENCH_REDIS_URL"] = args.redis_url
    env["BENCH_BLOCKLIST_PREFIX"] = f"bench:fjwt:{secrets.token_hex(4)}:"
    tokens: dict[str, str | None] = {
        "ungated": None,
        "licensechain": license_token(key),
        "jwt_extended": jwt_extended_token(env, WORK),
    }

    results: dict[str, list[Measurement]] = {v: [] for v in VARIANTS}
    for round_no in range(1, args.rounds + 1):
        for variant in VARIANTS:
            m = measure(variant, tokens[variant], env, args)
            results[variant].append(m)
            print(
                f"round {round_no}: {variant:<13} {m.req_per_s:8.0f} req/s "
                f"{m.cpu_us_per_req:7.0f} us CPU/req",
                flush=True,
            )

    rps = {v: statistics.median(m.req_per_s for m in r) for v, r in results.items()}
    cpu = {v: statistics.median(m.cpu_us_per_req for m in r) for v, r in results.items()}
    ratios = {
        "gated/ungated": (rps["licensechain"] / rps["ungated"], GATED_TARGET),
        "ours/flask-jwt-extended": (
            rps["licensechain"] / rps["jwt_extended"],
            VS_JWT_EXTENDED_TARGET,
        ),
    }
    # The same ratios from CPU per request (capacity = 1 / CPU cost): robust to a busy machine.
    cpu_ratios = {
        "gated/ungated": cpu["ungated"] / cpu["licensechain"],
        "ours/flask-jwt-extended": cpu["jwt_extended"] / cpu["licensechain"],
    }
    print()
    print(
        f"gunicorn {args.workers} workers ({args.worker_class}, {args.threads} threads), "
        f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s, "
        f"median of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'variant':<14}{'req/s':>10}{'us CPU/req':>12}")
    for variant in VARIANTS:
        print(f"{variant:<14}{rps[variant]:10.0f}{cpu[variant]:12.0f}")
    for name, (ratio, target) in ratios.items():
        verdict = "ok" if ratio >= target else "MISSED"
        print(
            f"{name:<24} req/s {ratio:5.2f}  CPU {cpu_ratios[name]:5.2f}  "
            f"(target >= {target}: {verdict})"
        )
    summary: dict[str, Any] = {
        "settings": vars(args),
        "runs": {v: [asdict(m) for m in r] for v, r in results.items()},
        "median_req_per_s": rps,
        "median_cpu_us_per_req": cpu,
        "ratios_req_per_s": {k: v[0] for k, v in ratios.items()},
        "ratios_cpu": cpu_ratios,
    }
    (WORK / "results.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
