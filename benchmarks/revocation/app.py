"""The issuer app of the workers section of ``run.py``: the embedded default plus one
route behind ``@requires_feature``; each answer names its worker (``X-Worker-PID``) and
when the worker took the request (``X-Worker-Time``, unix seconds), so queueing on the
way back does not count as propagation."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, request

from flask_licensechain import LicenseChain, requires_feature
from flask_licensechain.config import PREFIX


def create_app() -> Flask:
    app = Flask("bench_revocation", instance_path=os.environ["BENCH_INSTANCE_PATH"])
    app.config.update({k: v for k, v in os.environ.items() if k.startswith(PREFIX)})
    LicenseChain(app)

    @app.get("/export")
    @requires_feature("export")
    def export() -> dict[str, bool]:
        return {"exported": True}

    @app.before_request
    def note_the_time() -> None:
        request.environ["bench.started"] = time.time()

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker-PID"] = str(os.getpid())
        response.headers["X-Worker-Time"] = repr(request.environ.get("bench.started", 0.0))
        return response

    return app
