"""``examples/webhook_receiver.py`` as a real process: it verifies deliveries, prints each
event once however often it comes (deduplication by ``webhook-id``, kept across a
restart), and refuses forged ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import free_port
from issuer_support import close_issuer, make_issuer
from webhooks_support import wait_port

from flask_licensechain.store import Actor, Change
from flask_licensechain.webhooks.worker import Worker

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhook_receiver.py"


def start(port: int, secret: str, seen: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port), "WEBHOOK_SEEN_DB": str(seen)}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    return process


def printed(process: subprocess.Popen[bytes]) -> list[dict[str, object]]:
    process.terminate()
    out, _ = process.communicate(timeout=20)
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def test_the_example_receiver_verifies_and_deduplicates(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path, webhooks_allow_private=True)
    port = free_port()
    try:
        made = issuer.client.post(
            "/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/webhooks"}, headers=issuer.auth()
        ).get_json()
        receiver = start(port, made["secret"], tmp_path / "seen.db")
        app = issuer.new_app()
        with issuer.store.unit_of_work(Actor(kind="cli", id="t")) as unit:
            lic = issuer.store.licenses.create(app.id)
            unit.record(Change(action="license.create", target=lic.id, app_id=app.id, subject=lic))
        assert issuer.state.webhooks is not None
        worker = Worker(issuer.state.webhooks, threads=1)
        assert worker.run_once().succeeded == 1
        [delivery] = issuer.store.webhooks.list_deliveries(made["id"])
        # the same event again (as after a lost answer): printed once
        issuer.client.post(
            f"/v1/webhooks/{made['id']}/deliveries/{delivery.id}/retry", headers=issuer.auth()
        )
        assert worker.run_once().succeeded == 1
        forged = httpx.post(
            f"http://127.0.0.1:{port}/webhooks",
            content=b'{"type":"license.revoked"}',
            headers={
                "webhook-id": "msg_x",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 400
        first = printed(receiver)
        assert [(e["type"], e["data"]["id"]) for e in first] == [("license.created", lic.id)]  # type: ignore[index]
        # restarted: it still knows the id
        receiver = start(port, made["secret"], tmp_path / "seen.db")
        issuer.client.post(
            f"/v1/webhooks/{made['id']}/deliveries/{delivery.id}/retry", headers=issuer.auth()
        )
        assert worker.run_once().succeeded == 1
        assert printed(receiver) == []
    finally:
        close_issuer(issuer)
