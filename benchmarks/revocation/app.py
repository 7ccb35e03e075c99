"""The issuer app of the workers section of ``run.py``: the embedded default plus one
route behind ``@requires_feature``; each answer names its worker (``X-Worker-PID``)."""

from __future__ import annotations

import os

from flask import Flask, Response

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

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker-PID"] = str(os.getpid())
        return response

    return app
