"""A small issuer app for tests that need a real license server process.

``gunicorn --chdir tests/interop 'issuer_app:create_app()'``; every ``LICENSECHAIN_*``
variable of the environment configures it, ``ISSUER_INSTANCE_PATH`` is its instance folder.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_licensechain import LicenseChain
from flask_licensechain.config import PREFIX


def create_app() -> Flask:
    app = Flask("interop_issuer", instance_path=os.environ["ISSUER_INSTANCE_PATH"])
    app.config.update({k: v for k, v in os.environ.items() if k.startswith(PREFIX)})
    LicenseChain(app)
    return app
