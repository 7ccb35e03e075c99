"""The other process of the propagation benchmark: a denylist mirror that notes when
each revocation becomes visible, and prints those times as JSON when told "done".

    python propagation_child.py REDIS_URL
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
    mirror = DenylistMirror(RedisDenylist.from_uri(sys.argv[1]), on_event=note)
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
