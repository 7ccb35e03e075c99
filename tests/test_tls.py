"""The README's gunicorn TLS configuration (``examples/gunicorn_tls.conf.py``), run for real
with certificates made here: TLS 1.3 only refuses a TLS 1.2 client, the 1.2+ setting admits
only forward-secret suites, verify works over it with HSTS; and the desktop client's
certificate pinning refuses a swapped certificate, even one signed by the same trusted CA."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from interop.issuer_server import IssuerServer, stop_process

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "gunicorn_tls.conf.py"
INTEROP = ROOT / "tests" / "interop"
pytestmark = pytest.mark.slow


# -- certificates ------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class Certs:
    ca: Path
    leaves: dict[str, tuple[Path, Path]]  # name -> (cert, key)


def make_certs(directory: Path) -> Certs:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("LicenseChain test CA"))
        .issuer_name(_name("LicenseChain test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    leaves = {}
    for name in ("a", "b"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1"))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        os.chmod(key_path, 0o600)
        leaves[name] = (cert_path, key_path)
    return Certs(ca_path, leaves)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


# -- the server ----------------------------------------------------------------------------


@dataclass
class TLSServer:
    seed: IssuerServer
    port: int

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextmanager
def tls_server(seed: IssuerServer, certs: Certs, leaf: str, **env: str) -> Iterator[TLSServer]:
    cert, key = certs.leaves[leaf]
    environ = {
        **os.environ,
        **seed.config(),
        "ISSUER_INSTANCE_PATH": str(seed.directory / "instance"),
        "TLS_BIND": f"127.0.0.1:{seed.port}",
        "TLS_CERT_FILE": str(cert),
        "TLS_KEY_FILE": str(key),
        "WEB_CONCURRENCY": "1",
        **env,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(CONFIG),
            "--chdir",
            str(INTEROP),
            "--log-level",
            "warning",
            "issuer_app:create_app()",
        ],
        env=environ,
    )
    try:
        wait_for_port(seed.port, process)
        yield TLSServer(seed, seed.port)
    finally:
        stop_process(process)


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Wait until gunicorn accepts TCP connections on ``port`` (or dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not listen on {port} within {timeout} s")


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerServer]:
    port = free_port()
    server = IssuerServer(
        tmp_path_factory.mktemp("tls_issuer"),
        port,
        {"LICENSECHAIN_ISSUER": f"https://127.0.0.1:{port}/v1"},
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def server13(seed: IssuerServer, certs: Certs) -> Iterator[TLSServer]:
    with tls_server(seed, certs, "a") as running:
        yield running


def handshake(port: int, ca: Path, *, maximum: ssl.TLSVersion, ciphers: str | None = None) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())


# -- the tests -------------------------------------------------------------------------------


def test_tls13_only_refuses_tls12(server13: TLSServer, certs: Certs) -> None:
    assert handshake(server13.port, certs.ca, maximum=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(server13.port, certs.ca, maximum=ssl.TLSVersion.TLSv1_2)


def test_verify_works_over_tls_with_hsts(server13: TLSServer, certs: Certs) -> None:
    lic = server13.seed.new_license(plan="pro")
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs.ca))) as client:
        response = client.post(f"{server13.base_url}/v1/licenses/verify", json={"key": lic.key})
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        body = response.json()
        assert body["valid"] is True, body
        assert body["license_jwks_uri"].startswith("https://127.0.0.1:")
        # One HSTS header: the app's security headers (monitoring/headers.py) set it for a
        # request that came over HTTPS, and the server's config adds it where they did not.
        hsts = response.headers.get_list("Strict-Transport-Security")
        assert len(hsts) == 1, hsts
        max_age = int(hsts[0].split("max-age=")[1].split(";")[0])
        assert max_age >= 31536000 and "includeSubDomains" in hsts[0]
        jwks = client.get(body["license_jwks_uri"])
        assert jwks.status_code == 200 and jwks.json()["keys"]


def test_the_tls12_setting_admits_only_forward_secret_suites(
    seed: IssuerServer, certs: Certs, server13: TLSServer
) -> None:
    server13_port = server13.port
    seed.port = free_port()
    try:
        with tls_server(seed, certs, "a", TLS_MIN_VERSION="1.2") as server12:
            assert server12.port != server13_port
            tls12 = ssl.TLSVersion.TLSv1_2
            assert handshake(server12.port, certs.ca, maximum=tls12) == "TLSv1.2"
            # RSA key exchange (no forward secrecy) and CBC suites are refused
            with pytest.raises(ssl.SSLError):
                handshake(server12.port, certs.ca, maximum=tls12, ciphers="AES128-GCM-SHA256")
            with pytest.raises(ssl.SSLError):
                handshake(server12.port, certs.ca, maximum=tls12, ciphers="ECDHE+AES128+SHA")
    finally:
        seed.port = server13_port


def test_the_readme_shows_the_tested_configuration() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "gunicorn -c examples/gunicorn_tls.conf.py" in readme
    body = CONFIG.read_text(encoding="utf-8")
    start = body.index("def ssl_context")
    function = body[start : body.index("\n\n\n", start)]
    assert function in readme, "README's TLS block differs from examples/gunicorn_tls.conf.py"


# -- certificate pinning in the desktop client -----------------------------------------------


def pin_of(cert: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "desktop_client.py"), "--print-pin", str(cert)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def desktop(server: TLSServer, key: str, state: Path, certs: Certs, *pins: str) -> Any:
    args = [
        sys.executable,
        str(ROOT / "examples" / "desktop_client.py"),
        "--server",
        server.base_url,
        "--key",
        key,
        "--state-dir",
        str(state),
        "--ca-file",
        str(certs.ca),
    ]
    for pin in pins:
        args += ["--pin-sha256", pin]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode in (0, 1) and done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_pinning_refuses_a_swapped_certificate(
    seed: IssuerServer, certs: Certs, server13: TLSServer, tmp_path: Path
) -> None:
    pin_a, pin_b = pin_of(certs.leaves["a"][0]), pin_of(certs.leaves["b"][0])
    assert pin_a != pin_b and len(pin_a) == 44
    lic = seed.new_license(plan="pro", max_devices=5)
    code, status = desktop(server13, lic.key, tmp_path / "one", certs, pin_a)
    assert code == 0 and status["licensed"] is True and status["source"] == "online"
    untouched = seed.new_license(plan="pro")
    code, status = desktop(server13, untouched.key, tmp_path / "two", certs, pin_b)
    assert code == 1 and status["licensed"] is False
    assert "certificate_pin_mismatch" in status["reason"]
    # refused before the request was sent: the server bound no device for that key
    assert seed.store.licenses.get(untouched.id).devices == ()
    code, _ = desktop(server13, untouched.key, tmp_path / "two-b", certs, pin_a)
    assert code == 0 and len(seed.store.licenses.get(untouched.id).devices) == 1
    # A backup pin: either key passes.
    code, status = desktop(server13, lic.key, tmp_path / "three", certs, pin_b, pin_a)
    assert code == 0, status
    # Without a pin the CA alone decides: both certificates are valid for 127.0.0.1.
    code, status = desktop(server13, lic.key, tmp_path / "four", certs)
    assert code == 0, status


def test_pinning_refuses_the_other_certificate_on_a_server_swap(
    seed: IssuerServer, certs: Certs, server13: TLSServer, tmp_path: Path
) -> None:
    """The server's certificate is swapped (same CA, another key): the pinned client refuses
    it, before sending the license key, and keeps working offline on its kept token."""
    pin_a = pin_of(certs.leaves["a"][0])
    lic = seed.new_license(plan="pro", max_devices=5)
    state = tmp_path / "state"
    code, status = desktop(server13, lic.key, state, certs, pin_a)
    assert code == 0 and status["source"] == "online"
    server13_port = server13.port
    seed.port = free_port()
    try:
        with tls_server(seed, certs, "b") as swapped:
            code, status = desktop(swapped, lic.key, tmp_path / "fresh", certs, pin_a)
            assert code == 1 and "certificate_pin_mismatch" in status["reason"]
            assert status["offline"] is True
            # the kept token (from the genuine server) still serves, offline
            args = ["--refresh-before", "1000000"]  # force a refresh attempt
            done = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "examples" / "desktop_client.py"),
                    "--server",
                    swapped.base_url,
                    "--key",
                    lic.key,
                    "--state-dir",
                    str(state),
                    "--ca-file",
                    str(certs.ca),
                    "--pin-sha256",
                    pin_a,
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            kept = json.loads(done.stdout.strip().splitlines()[-1])
            assert kept["licensed"] is True and kept["source"] == "cache" and kept["offline"]
    finally:
        seed.port = server13_port
