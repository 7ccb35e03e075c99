"""The other process of the propagation benchmark: a denylist mirror that notes when
each revocation becomes visible, and prints those times as JSON when told "done".

    python propagation_child.py REDIS_URL [NAMESPACE]

(``benchmarks/revocation/run.py`` runs it too, on a namespace of its own.)
"""

from __future__ import annotations

import json
import sys
import time

from flask_licensechain.core.denylist.mirror import DenylistMirror
from flask_licensechain.core.denylist.redis import RedisDenylist

seen: dict[str, float] = {}


def note(event: str) -> None:
    # Called by the listener right after the entry is applied: is_revoked says yes from now.
    at = time.time()
    if event.startswith("+j "):
        seen.setdefault(event[3:].rpartition(" ")[0], at)


def main() -> None:
    backend = RedisDenylist.from_uri(
        sys.argv[1], **({"namespace": sys.argv[2]} if sys.argv[2:] else {})
    )
    mirror = DenylistMirror(backend, on_event=note)
    if not mirror.wait_synced(10):
        sys.exit("mirror did not sync")
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "done":
            print(json.dumps(seen), flush=True)
            break
    mirror.close()


if __name__ == "__main__":
    main()
