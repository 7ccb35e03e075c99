"""The app the console's browser tests run as a real process (``flask --app console_server
run``): an issuer with the console on, configured from the environment (``LICENSECHAIN_*``
and ``SECRET_KEY``). Each answer names its worker in ``X-Worker-PID``."""

from __future__ import annotations

import os

from flask import Flask, Response

from flask_licensechain import LicenseChain
from flask_licensechain.config import config_from_environ


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ["CONSOLE_TEST_INSTANCE"])
    app.config.update(config_from_environ(os.environ))
    app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    LicenseChain(app)

    @app.after_request
    def worker_pid(response: Response) -> Response:
        response.headers["X-Worker-PID"] = str(os.getpid())
        return response

    return app
