"""gunicorn serving LicenseChain over TLS itself (no proxy in front); tests/test_tls.py runs it.

    TLS_CERT_FILE=/etc/licensechain/fullchain.pem TLS_KEY_FILE=/etc/licensechain/key.pem \\
        gunicorn -c examples/gunicorn_tls.conf.py 'yourapp:create_app()'

- TLS 1.3 only (every TLS 1.3 suite is an AEAD over an ephemeral key exchange: forward
  secret). ``TLS_MIN_VERSION=1.2`` also admits TLS 1.2 clients, with ECDHE and AEAD suites
  only (still forward secret); nothing older.
- HTTP/1.1 (gunicorn speaks nothing else; ALPN says so); no TLS compression or renegotiation.
- HSTS: every response carries ``Strict-Transport-Security`` (two years, subdomains), unless
  the app set its own.
"""

import os
import ssl
from collections.abc import Callable, Iterable
from typing import Any

bind = os.environ.get("TLS_BIND", "0.0.0.0:8443")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
certfile = os.environ["TLS_CERT_FILE"]
keyfile = os.environ["TLS_KEY_FILE"]

HSTS = "max-age=63072000; includeSubDomains"
#: TLS 1.2 suites with forward secrecy and AEAD only (OpenSSL cipher string)
TLS12_FORWARD_SECRET = "ECDHE+AESGCM:ECDHE+CHACHA20"


def ssl_context(conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> Any:
    context = default_ssl_context_factory()  # TLS server context with certfile/keyfile loaded
    if os.environ.get("TLS_MIN_VERSION", "1.3") == "1.2":
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_FORWARD_SECRET)
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    return context


def post_worker_init(worker: Any) -> None:
    """Wrap the loaded app so that every response carries HSTS."""
    app = worker.wsgi

    def with_hsts(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            if not any(name.lower() == "strict-transport-security" for name, _ in headers):
                headers.append(("Strict-Transport-Security", HSTS))
            return start_response(status, headers, *args)

        result: Iterable[bytes] = app(environ, start)
        return result

    worker.wsgi = with_hsts
