"""A LicenseChain license server in one file.

    python examples/quickstart.py                 # http://127.0.0.1:5000
    HOST=0.0.0.0 PORT=8000 python examples/quickstart.py

Every ``LICENSECHAIN_*`` variable of the environment configures the extension (the list is
in ``flask_licensechain/config.py``), e.g. ``LICENSECHAIN_DATABASE_URL=postgresql://...``
and ``LICENSECHAIN_REDIS_URL=redis://...``. Without them it runs on the embedded defaults:
a SQLite store in the instance folder (``examples/instance``, or ``QUICKSTART_INSTANCE_PATH``),
in-process denylist and rate limits, and a signing key made on first start.

On first start it creates a demo app, a license key and an admin API key, and prints them
with curl commands to try. With the ``console`` extra installed (``pip install -e
'.[console]'``) it also serves the admin console at ``/console`` and prints a one-time setup
link for its first owner, ``owner@example.com``. It remembers the demo in
``<instance>/quickstart.json``, so later starts reuse it instead of making duplicates (the
API key and the setup link are shown on the first start only).

The same file serves the admin CLI: ``flask --app examples/quickstart.py licensechain --help``.
This is Werkzeug's development server; in production run the app under gunicorn.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from flask import Flask

from flask_licensechain import LicenseChain, get_issuer_state, get_state
from flask_licensechain.api.docs import bundle_dir
from flask_licensechain.api.ratelimit import ratelimit_storage_uri
from flask_licensechain.config import PREFIX, Settings, config_from_environ
from flask_licensechain.core.errors import ConfigError, NotFound
from flask_licensechain.core.private_files import PRIVATE_FILE_MODE, make_private_dirs
from flask_licensechain.issuer import IssuerConfigurationError
from flask_licensechain.revocation import denylist_uri
from flask_licensechain.services import api_keys as key_service
from flask_licensechain.services import apps as app_service
from flask_licensechain.services import licenses as license_service
from flask_licensechain.store import Actor, Store

DEMO_FILE = "quickstart.json"
SECRET_KEY_FILE = "quickstart-secret-key"
CONSOLE_OWNER = "owner@example.com"
DEMO_HWUID = "demo-machine-1"
DEFAULT_INSTANCE = Path(__file__).resolve().parent / "instance"
PAD = " " * 17
#: step 2 reads the token from step 1's answer with this
TOKEN_FROM_ANSWER = "python3 -c 'import json, sys; print(json.load(sys.stdin)[\"license_token\"])'"


@dataclass(frozen=True)
class Demo:
    app_id: str
    app_name: str
    license_id: str
    license_key: str


def create_app() -> Flask:
    instance = os.environ.get("QUICKSTART_INSTANCE_PATH") or str(DEFAULT_INSTANCE)
    app = Flask("quickstart", instance_path=os.path.abspath(instance))
    app.config.update(config_from_environ(os.environ))
    # The issuer URL is configuration, never the Host header: default to the address the
    # quickstart listens on (HOST/PORT), as integrators will spell it.
    host = os.environ.get("HOST", "127.0.0.1")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    default_issuer = f"http://{shown}:{os.environ.get('PORT', '5000')}/v1"
    app.config.setdefault(PREFIX + "ISSUER", default_issuer)
    # With the extras installed, the API docs and the console are on (unless the environment
    # says otherwise), here rather than in main(): `flask --app examples/quickstart.py ...`
    # then loads the same app as `python examples/quickstart.py`.
    if bundle_dir() is not None:
        app.config.setdefault(PREFIX + "API_DOCS", True)
    if console_installed():
        app.config.setdefault(PREFIX + "CONSOLE", True)
    if str(app.config.get(PREFIX + "CONSOLE", "")).lower() in ("1", "true", "yes", "on"):
        app.secret_key = app.config.get("SECRET_KEY") or _secret_key(Path(app.instance_path))
    LicenseChain(app)
    return app


def console_installed() -> bool:
    """Whether the ``console`` extra's packages are importable."""
    return all(importlib.util.find_spec(name) for name in ("flask_wtf", "argon2", "pyotp"))


def _secret_key(instance: Path) -> str:
    """Flask's ``SECRET_KEY`` for the console's CSRF tokens: made once, kept 0600."""
    path = instance / SECRET_KEY_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    make_private_dirs(instance)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key


def console_owner_link(app: Flask, console_url: str) -> str | None:
    """A one-time setup link for the console's first owner, made on the first start (None
    when the console is off or the owner exists)."""
    if not get_state(app).settings.console:
        return None
    # The console extra, installed when the console is on.
    from flask_licensechain.console import people
    from flask_licensechain.console.state import console_state
    from flask_licensechain.services import users as user_service

    state = console_state(app)
    with app.app_context():
        try:
            people.find_user(state, CONSOLE_OWNER)
            return None
        except NotFound:
            pass
        actor = Actor(kind="cli", id="quickstart", name="examples/quickstart.py")
        _, token = user_service.create_user(state, actor, email=CONSOLE_OWNER, role="owner")
        return str(people.setup_link(state, token, console_url))


def ensure_demo(app: Flask) -> tuple[Demo, str | None]:
    """The demo app and license, created on first start; and the admin API key if new.
    They are made through the service layer, as the CLI would: each is in the audit log."""
    state = get_issuer_state(app)
    store = state.store
    path = Path(app.instance_path) / DEMO_FILE
    demo = _load_demo(path, store)
    if demo is not None:
        return demo, None
    actor = Actor(kind="cli", id="quickstart", name="examples/quickstart.py")
    seller_app = app_service.create_app(
        state,
        actor,
        name="Quickstart Demo",
        description="Created by examples/quickstart.py",
        tier="pro",
    )
    lic = license_service.create_license(
        state,
        actor,
        app_id=seller_app.id,
        plan="pro",
        features=["export"],
        max_devices=2,
        issued_to="Demo User",
    )
    _, api_key = key_service.create_key(
        store, actor, creator=None, name="quickstart admin", scopes=["*"]
    )
    demo = Demo(seller_app.id, seller_app.name, lic.id, lic.key)
    # It holds a license key: owner-only, like the database beside it.
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(demo), indent=2) + "\n")
    return demo, api_key


def _load_demo(path: Path, store: Store) -> Demo | None:
    """The remembered demo, if it is still in this store (another database means a new one)."""
    try:
        demo = Demo(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    lic = store.licenses.get(demo.license_id)
    return demo if lic is not None and lic.key == demo.license_key else None


def _is_redis(uri: str) -> bool:
    return uri.split("://", 1)[0].lower().startswith(("redis", "rediss"))


def stores_lines(settings: Settings, backend: str) -> list[str]:
    """Which stores are in use, and what that means for several workers (and hosts)."""
    store = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}.get(backend, backend)
    shared_denylist = _is_redis(denylist_uri(settings))
    shared_limits = _is_redis(ratelimit_storage_uri(settings))
    where = {True: "Redis", False: "in-process"}
    lines = [
        f"  stores         {store} store; denylist {where[shared_denylist]}; "
        f"rate limits {where[shared_limits]}",
        f"{PAD}With several workers (gunicorn -w N):",
    ]
    if shared_denylist:
        lines.append(f"{PAD}- a revocation reaches every worker within milliseconds (Redis);")
    else:
        poll = settings.revocation_poll_interval
        lines.append(f"{PAD}- each worker reads revocations from the store (within {poll:g} s);")
    if shared_limits:
        lines.append(f"{PAD}- the workers share one rate-limit budget per client (Redis);")
    else:
        lines.append(
            f"{PAD}- each worker counts rate limits alone (N workers: N times the budget);"
        )
        lines.append(f"{PAD}  LICENSECHAIN_REDIS_URL=redis://... shares them;")
    if backend == "sqlite":
        lines.append(
            f"{PAD}- SQLite serves one host: LICENSECHAIN_DATABASE_URL=postgresql://... for more."
        )
    else:
        lines.append(f"{PAD}- the store serves several hosts.")
    return lines


def instructions(
    demo: Demo,
    api_key: str | None,
    api: str,
    backend: str,
    status: str = "ACTIVE",
    settings: Settings | None = None,
    console: str | None = None,
) -> str:
    """What to print: the demo objects and the curl commands, for the API at ``api``.

    ``status`` is the demo license's stored status; when it is not ``ACTIVE`` (suspended or
    revoked since the first start) the license line says so and how to get a working one.
    """
    json_header = "-H 'Content-Type: application/json'"
    verify_body = json.dumps({"key": demo.license_key, "hwuid": DEMO_HWUID})
    if api_key:
        key_line = f"  admin API key  {api_key}   (scopes: *; shown this once, keep it)"
        admin_key = api_key
    else:
        key_line = (
            "  admin API key  shown on the first start only; make another with\n"
            "                 flask --app examples/quickstart.py licensechain create-api-key "
            "--name admin --scope '*'"
        )
        admin_key = "<your admin API key>"
    verify = f"curl -s -X POST {api}/licenses/verify {json_header} -d '{verify_body}'"
    lines = [
        f"LicenseChain quickstart: license server at {api}",
        "",
        *stores_lines(settings or Settings(), backend),
        f"  demo app       {demo.app_name} ({demo.app_id}), tier pro",
        f"  license key    {demo.license_key}   (plan pro, features: export, 2 devices)",
        *_status_lines(status, demo),
        key_line,
        *([console] if console else []),
        "",
        "1. Verify the license key; the answer carries a license_token:",
        f"  {verify}",
        "",
        "2. Introspect that token (TOKEN takes it from step 1's answer):",
        f"  TOKEN=$({verify} | {TOKEN_FROM_ANSWER})",
        f"  curl -s -X POST {api}/licenses/introspect {json_header} "
        '-d "{\\"license_token\\": \\"$TOKEN\\"}"',
        "",
        "3. Use the admin API (list apps):",
        f"  curl -s {api}/apps -H 'Authorization: Bearer {admin_key}'",
        "",
        f"Public keys: {api}/licenses/jwks   API description: {api}/openapi.json",
        *([f"API reference (Swagger UI): {api}/docs"] if _docs_on(settings) else []),
        "Ctrl+C stops the server.",
    ]
    return "\n".join(lines)


def console_lines(app: Flask, origin: str) -> str:
    """The admin console's address and, on its first start, the owner's setup link."""
    settings = get_state(app).settings
    if not settings.console:
        return "  admin console  pip install -e '.[console]' and start again to get one"
    url = origin + settings.console_path.rstrip("/")
    link = console_owner_link(app, url)
    lines = [f"  admin console  {url}"]
    if link:
        lines.append(f"  setup link     {link}   (one use, 24 h: {CONSOLE_OWNER}, owner)")
    else:
        lines.append(
            "  setup link     flask --app examples/quickstart.py licensechain users "
            f"setup-link {CONSOLE_OWNER}"
        )
    return "\n".join(lines)


def _docs_on(settings: Settings | None) -> bool:
    return settings is not None and bool(settings.api_docs)


def _status_lines(status: str, demo: Demo) -> list[str]:
    """The warning under the license line when the demo license no longer verifies."""
    pad = PAD
    if status == "ACTIVE":
        return []
    if status == "SUSPENDED":
        return [
            f"{pad}SUSPENDED: verify refuses it until an admin lifts that:",
            f"{pad}  PATCH /v1/licenses/{demo.license_id}/activate",
        ]
    return [
        f"{pad}{status}: verify refuses it for good. Delete the instance folder to start over,",
        f"{pad}or make another: flask --app examples/quickstart.py licensechain create-license",
        f"{pad}  --app-id {demo.app_id} --feature export --plan pro --max-devices 2",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="LicenseChain quickstart license server")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="env HOST")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "5000")),
        help="env PORT; the issuer is http://HOST:PORT/v1 unless LICENSECHAIN_ISSUER is set",
    )
    args = parser.parse_args()
    os.environ["HOST"], os.environ["PORT"] = args.host, str(args.port)

    try:
        app = create_app()
    except (ConfigError, IssuerConfigurationError) as exc:  # a setting to fix, not a traceback
        raise SystemExit(f"quickstart: {exc}") from None
    demo, api_key = ensure_demo(app)
    state = get_state(app)
    assert state.store is not None
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    api = f"http://{shown_host}:{args.port}" + state.settings.url_prefix.rstrip("/")
    stored = state.store.licenses.get(demo.license_id)
    status = stored.status if stored is not None else "ACTIVE"
    console = console_lines(app, f"http://{shown_host}:{args.port}")
    print(instructions(demo, api_key, api, state.store.backend, status, state.settings, console))
    print(flush=True)
    app.run(host=args.host, port=args.port, use_reloader=False)


if __name__ == "__main__":
    main()
