"""A webhook receiver for LicenseChain events: verify, deduplicate, print.

    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py

It listens on ``http://127.0.0.1:8000/webhooks`` (``HOST``, ``PORT`` change that) and, for
each delivery:

1. verifies it with ``flask_licensechain.webhooks.verify`` (the Standard Webhooks
   signature, and a timestamp at most 5 minutes away): a forged, altered or replayed
   delivery gets 400;
2. deduplicates it by its ``webhook-id``: delivery is at least once, so the same event
   may come again (after a timeout, or a worker that died mid-delivery). The ids seen are
   kept in a SQLite file (``WEBHOOK_SEEN_DB``, default ``webhook_seen.db``), so a restart
   does not forget them;
3. prints the event as one JSON line ``{"id", "type", "timestamp", "data"}`` and answers
   204 quickly (do slow work later, from a queue: an answer after 10 s counts as a
   failure and the event comes again).

Events are not ordered: ``license.updated`` may arrive before ``license.created``. Order by
the payload's ``timestamp``, or read the object back from the API when order matters.
During a secret rotation deliveries carry two signatures: either secret verifies, so
switch ``WEBHOOK_SECRET`` to the new one at any time within the overlap.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading

from flask import Flask, Response, request
from werkzeug.serving import run_simple

from flask_licensechain.webhooks import InvalidWebhook, verify

app = Flask(__name__)
SECRET = os.environ.get("WEBHOOK_SECRET", "")
_seen = sqlite3.connect(
    os.environ.get("WEBHOOK_SEEN_DB", "webhook_seen.db"), check_same_thread=False
)
_seen.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")
_lock = threading.Lock()


def first_time(message_id: str) -> bool:
    """Whether ``message_id`` is new (and remember it)."""
    with _lock, _seen:
        inserted = _seen.execute("INSERT OR IGNORE INTO seen (id) VALUES (?)", (message_id,))
        return inserted.rowcount == 1


@app.post("/webhooks")
def receive() -> Response:
    try:
        event = verify(request.get_data(), request.headers, SECRET)
    except InvalidWebhook as exc:
        return Response(f"refused: {exc}\n", status=400)
    message_id = request.headers["webhook-id"]
    if first_time(message_id):
        print(json.dumps({"id": message_id, **event}), flush=True)
    return Response(status=204)


if __name__ == "__main__":
    if not SECRET.startswith("whsec_"):
        raise SystemExit("set WEBHOOK_SECRET to the webhook's secret (whsec_...)")
    # Werkzeug's server without Flask's banner: stdout carries only the events.
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
    run_simple(host, port, app, threaded=True)
