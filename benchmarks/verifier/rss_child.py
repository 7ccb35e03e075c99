"""The memory half of the verifier benchmark, in a process of its own.

Signs and verifies N distinct tokens one at a time with a default ``TokenVerifier``
(at most 10,000 entries and 64 MiB estimated) and prints RSS before and after as
JSON, with the bytes one cache entry costs (tracemalloc, token string included)
and the documented bound.

    python rss_child.py N
"""

from __future__ import annotations

import base64
import gc
import json
import sys
import tracemalloc

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from flask_licensechain.core.contract import build_claims
from flask_licensechain.core.denylist import MemoryDenylist
from flask_licensechain.core.keys import SigningKey
from flask_licensechain.core.keysource import StaticKeySource
from flask_licensechain.core.verifier import TokenVerifier

ISSUER = "https://licenses.bench.test"
NOW = 1_900_000_000 - 86400 * 365 * 10  # any fixed time; the verifier's clock matches it


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    count = int(sys.argv[1])
    key = SigningKey.generate()
    header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": key.kid}).encode())
    pad, sha = padding.PKCS1v15(), hashes.SHA256()

    def token(i: int) -> str:
        claims = build_claims(
            issuer=ISSUER,
            license_id=f"lic_{i:07d}",
            app_id="app_bench",
            seller_tier="pro",
            plan="pro",
            features=["export", "reports", "api"],
            license_exp=NOW + 86400,
            hw_bound=True,
            now=NOW,
        )
        signing_input = f"{header}.{b64(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signing_input}.{b64(key.private_key.sign(signing_input.encode(), pad, sha))}"

    def verifier() -> TokenVerifier:
        return TokenVerifier(
            StaticKeySource({"keys": [key.jwk()]}),
            issuer=ISSUER,
            audience="app_bench",
            denylist=MemoryDenylist(),
            clock=lambda: NOW + 60,
        )

    # Bytes per entry: tracemalloc around 2,000 insertions whose tokens die afterwards
    # except in the cache (as a request's token string does).
    probe = verifier()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(2000):
        probe.verify(token(10_000_000 + i))
    gc.collect()
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / probe.cache_len
    tracemalloc.stop()
    del probe
    gc.collect()

    ours = verifier()
    for i in range(1000):  # warm every code path, then start from an empty cache
        ours.verify(token(20_000_000 + i))
    ours.clear_cache()
    gc.collect()
    rss_before = rss()
    for i in range(count):
        ours.verify(token(i))
    gc.collect()
    print(
        json.dumps(
            {
                "rss_before": rss_before,
                "rss_after": rss(),
                "cache_len": ours.cache_len,
                "bytes_per_entry": per_entry,
                "estimated_cache_bytes": ours.cache_bytes,
                "bound": ours.cache_max_bytes,
                "token_chars": len(token(0)),
            }
        )
    )


if __name__ == "__main__":
    main()
