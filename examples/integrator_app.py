"""An integrator's Flask app: it knows only the issuer's JWKS URL, and gates one premium route.

    LICENSECHAIN_JWKS_URL=http://127.0.0.1:5000/v1/licenses/jwks \\
    LICENSECHAIN_ISSUER=http://127.0.0.1:5000/v1 \\
    LICENSECHAIN_AUDIENCE=<your app id> \\
    python examples/integrator_app.py --port 5001

    curl -H "Authorization: Bearer $LICENSE_TOKEN" http://127.0.0.1:5001/reports/export

Every ``LICENSECHAIN_*`` variable of the environment is passed to the extension (see
``flask_licensechain/config.py`` for the list). With ``LICENSECHAIN_JWKS_URL`` set, the
extension runs in integrator mode: no database, no signing keys, only the verifier,
which fetches and caches the JWKS and checks tokens offline.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flask import Flask, jsonify

from flask_licensechain import LicenseChain, current_license, requires_feature, requires_license
from flask_licensechain.config import PREFIX, config_from_environ
from flask_licensechain.core.errors import ConfigError


def create_app(environ: dict[str, str] | None = None) -> Flask:
    environ = dict(os.environ if environ is None else environ)
    if not environ.get(PREFIX + "JWKS_URL"):
        raise SystemExit("set LICENSECHAIN_JWKS_URL to the issuer's /v1/licenses/jwks URL")
    app = Flask(__name__)
    app.config.update(config_from_environ(environ))
    LicenseChain(app)

    @app.get("/")
    def index() -> Any:
        return jsonify(app="integrator example", premium="/reports/export")

    @app.get("/me")
    @requires_license
    def me() -> Any:
        return jsonify(
            license_id=current_license.sub,
            plan=current_license.plan,
            features=sorted(current_license.features),
        )

    @app.get("/reports/export")
    @requires_feature("export")
    def export_report() -> Any:
        return jsonify(
            report="quarterly-sales.csv",
            rows=[["region", "revenue"], ["north", 1200], ["south", 900]],
            licensed_to=current_license.sub,
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="LicenseChain integrator example")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="env HOST")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "5001")), help="env PORT"
    )
    args = parser.parse_args()
    try:
        app = create_app()
    except ConfigError as exc:  # a setting to fix: its message, not a traceback
        raise SystemExit(f"integrator_app: {exc}") from None
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
