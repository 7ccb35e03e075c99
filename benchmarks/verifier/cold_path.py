"""The verifier's cold path before and after a change, in one run, by CPU time.

Loads ``flask_licensechain/core/verifier.py`` as it is at a git revision (``--before``,
default ``main``) next to the working tree's, and verifies the same distinct tokens with
both, interleaved with the bare RSA verify (the floor of ``run.py``). The clock is the
thread's CPU time, which other jobs on a shared machine barely move; wall time moves
with them. Also prints the Python around the signature alone (RSA check stubbed out).

    .venv/bin/python benchmarks/verifier/cold_path.py [--before main] [--rounds 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from jwt.utils import base64url_decode
from run import AUDIENCE, ISSUER, make_tokens  # benchmarks/verifier/run.py

from flask_licensechain.core import verifier as after
from flask_licensechain.core.denylist import Denylist, MemoryDenylist, denylist_from_uri
from flask_licensechain.core.denylist.mirror import DenylistMirror
from flask_licensechain.core.keys import SigningKey
from flask_licensechain.core.keysource import StaticKeySource

REPO = Path(__file__).resolve().parents[2]


def load_before(revision: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{revision}:flask_licensechain/core/verifier.py"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="lc-verifier-before-")) / "verifier.py"
    path.write_text(source)
    # A submodule name of the package, so that its relative imports resolve.
    name = "flask_licensechain.core._verifier_before"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cpu_us(fn: Callable[[str], Any], tokens: Sequence[str]) -> float:
    start = time.thread_time()
    for token in tokens:
        fn(token)
    return (time.thread_time() - start) / len(tokens) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="main", help="git revision of the 'before' verifier")
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="'' for memory")
    args = p.parse_args()
    before = load_before(args.before)
    key = SigningKey.generate()
    tokens = make_tokens(key, args.tokens)
    source = StaticKeySource({"keys": [key.jwk()]})
    denylist: Denylist = MemoryDenylist()
    if args.redis:
        denylist = denylist_from_uri(args.redis)
        assert isinstance(denylist, DenylistMirror) and denylist.wait_synced(10)
    public = key.public_key

    def floor(token: str) -> None:
        signing_input, _, signature = token.rpartition(".")
        public.verify(
            base64url_decode(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )

    def rounds(modules: dict[str, ModuleType], with_floor: bool) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in modules}
        if with_floor:
            out["floor"] = []
        for _ in range(args.rounds):
            if with_floor:
                out["floor"].append(cpu_us(floor, tokens))
            for name, module in modules.items():
                ours = module.TokenVerifier(
                    source, issuer=ISSUER, audience=AUDIENCE, denylist=denylist,
                    cache_size=max(10_000, args.tokens),
                )  # fmt: skip
                out[name].append(cpu_us(ours.verify, tokens))
        return out

    full = rounds({"before": before, "after": after}, with_floor=True)
    stubbed = {}
    for module in (before, after):
        module._signature_ok = lambda *a: True  # type: ignore[attr-defined]
    stubbed = rounds({"before": before, "after": after}, with_floor=False)

    print(f"\n{args.tokens} distinct tokens, {args.rounds} rounds, CPU µs per token "
          f"(best / median); before = {args.before}, after = working tree\n")  # fmt: skip
    print("| | best | median | best / floor |")
    print("|---|---:|---:|---:|")
    best_floor = min(full["floor"])
    for name in ("floor", "before", "after"):
        values = full[name]
        print(f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} | "
              f"{min(values) / best_floor:.2f}x |")  # fmt: skip
    for name in ("before", "after"):
        values = stubbed[name]
        print(f"| {name}, RSA check stubbed (the Python around it) | {min(values):.1f} | "
              f"{statistics.median(values):.1f} | |")  # fmt: skip


if __name__ == "__main__":
    main()
