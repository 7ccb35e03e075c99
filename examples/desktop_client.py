"""A desktop app's license check: activate online once, then work offline until ``exp``.

    python examples/desktop_client.py --server http://127.0.0.1:5000 --key LC-XXXXXX-XXXXXX-XXXXXX

What it does, each run (or every ``--interval`` seconds with ``--watch N``):

1. Reads the token it kept in ``--state-dir`` (``token.json``) and checks it offline with
   the core verifier against the JWKS it kept beside it (``jwks.json``): signature, ``exp``,
   ``aud`` (the app id the server answered with), and ``iss`` when ``--issuer`` is given.
2. When there is no usable token, or it expires within ``--refresh-before`` seconds, it
   calls ``POST /v1/licenses/verify`` with the license key and LicenseChain's default
   hardware id, keeps the new token, and fetches the JWKS named by ``license_jwks_uri``.
3. When the server cannot be reached it keeps working on the kept token until its ``exp``.
   When the server answers that the license is no longer valid, the kept token is dropped.

Certificate pinning (``--pin-sha256 PIN``, repeatable for a backup key): the client also
requires the server's public key to be one of these, by the base64 SHA-256 of its
SubjectPublicKeyInfo (RFC 7469's ``pin-sha256``), checked right after the TLS handshake and
before any byte of the request (the license key) is sent. A mismatch counts as an
unreachable server: the kept token keeps working until ``exp``. Print a server's pin with
``--print-pin CERT.pem``. ``--ca-file`` trusts a private CA.

It prints one JSON line per check: ``{"licensed", "source" ("online"|"cache"), "offline",
"license_id", "plan", "features", "expires_at", "reason"?}`` and exits 0 when licensed, 1 when
not, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import socket
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from flask_licensechain.core.errors import LicenseChainError
from flask_licensechain.core.keysource import StaticKeySource, parse_jwks
from flask_licensechain.core.verifier import LicenseClaims, TokenVerifier

TIMEOUT = 5.0
DEFAULT_STATE_DIR = Path.home() / ".licensechain-demo"


def default_hardware_id() -> str:
    """LicenseChain's default hardware id: SHA-256 of host name, OS and machine type."""
    raw = f"licensechain|python|{socket.gethostname()}|{platform.system()}|{platform.machine()}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ServerUnreachable(Exception):
    """No answer from the license server (network down, server down, 5xx)."""


class PinMismatch(ServerUnreachable):
    """The server's public key is none of the pinned ones."""


def spki_sha256(certificate: x509.Certificate) -> str:
    """RFC 7469 ``pin-sha256``: base64 of SHA-256 of the DER SubjectPublicKeyInfo."""
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


class LicenseRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Status:
    licensed: bool
    source: str | None = None  # "online": fresh from the server; "cache": the kept token
    offline: bool = False  # the server could not be reached during this check
    claims: LicenseClaims | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "licensed": self.licensed,
            "source": self.source,
            "offline": self.offline,
        }
        if self.claims is not None:
            data.update(
                license_id=self.claims.sub,
                jti=self.claims.jti,
                plan=self.claims.plan,
                features=sorted(self.claims.features),
                expires_at=self.claims.exp,
            )
        if self.reason:
            data["reason"] = self.reason
        return data


class StateFiles:
    """The kept token and JWKS: small JSON files, readable by this user only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.token_file = directory / "token.json"
        self.jwks_file = directory / "jwks.json"

    def read(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write(self, path: Path, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Write then rename: a crash never leaves half a token behind.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def forget_token(self) -> None:
        self.token_file.unlink(missing_ok=True)


@dataclass
class DesktopLicense:
    server: str
    license_key: str
    state: StateFiles
    issuer: str | None = None
    refresh_before: float = 300.0
    leeway: float = 0.0
    hardware_id: str = field(default_factory=default_hardware_id)
    #: accepted ``pin-sha256`` values of the server's key; empty: no pinning
    pins: tuple[str, ...] = ()
    #: a CA bundle to trust instead of the system's
    ca_file: str | None = None

    def check(self) -> Status:
        kept = self._kept_claims()
        if kept is not None and kept.exp - time.time() > self.refresh_before:
            return Status(True, "cache", claims=kept)
        try:
            fresh = self._activate()
        except ServerUnreachable as exc:
            if kept is not None:  # keep working offline until exp
                return Status(True, "cache", offline=True, claims=kept)
            return Status(False, offline=True, reason=f"server_unreachable: {exc}")
        except LicenseRefused as refused:
            self.state.forget_token()
            return Status(False, "online", reason=refused.reason)
        return Status(True, "online", claims=fresh)

    # -- offline ----------------------------------------------------------------------

    def _kept_claims(self) -> LicenseClaims | None:
        kept = self.state.read(self.state.token_file)
        jwks = self.state.read(self.state.jwks_file)
        if kept is None or jwks is None:
            return None
        try:
            return self._verifier(jwks, kept.get("app_id")).verify(str(kept["token"]))
        except (LicenseChainError, KeyError):
            return None  # expired, tampered with, or signed by a key we do not have

    def _verifier(self, jwks: dict[str, Any], app_id: str | None) -> TokenVerifier:
        return TokenVerifier(
            StaticKeySource(jwks), issuer=self.issuer, audience=app_id, leeway=self.leeway
        )

    # -- online -----------------------------------------------------------------------

    def _activate(self) -> LicenseClaims:
        answer = self._post(
            "/v1/licenses/verify", {"key": self.license_key, "hwuid": self.hardware_id}
        )
        if answer.get("valid") is not True:
            raise LicenseRefused(str(answer.get("reason") or "license_invalid"))
        token, app_id = answer.get("license_token"), answer.get("appId")
        jwks_uri = answer.get("license_jwks_uri")
        if not isinstance(token, str) or not isinstance(jwks_uri, str):
            raise ServerUnreachable("the verify answer has no token")
        jwks = self._get_json(jwks_uri)
        parse_jwks(jwks)  # refuse to keep a broken key set
        try:
            claims = self._verifier(jwks, app_id).verify(token)
        except LicenseChainError as exc:
            raise LicenseRefused(f"token_rejected: {exc.reason}") from exc
        self.state.write(self.state.jwks_file, jwks)
        self.state.write(self.state.token_file, {"token": token, "app_id": app_id})
        return claims

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.server.rstrip("/") + path
        return self._json(lambda client: client.post(url, json=body, extensions=self._trace()))

    def _get_json(self, url: str) -> dict[str, Any]:
        return self._json(lambda client: client.get(url, extensions=self._trace()))

    def _trace(self) -> dict[str, Any]:
        return {"trace": self._check_pin} if self.pins else {}

    def _check_pin(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: runs after the TLS handshake, before the request is sent."""
        if event != "connection.start_tls.complete":
            return
        ssl_object = info["return_value"].get_extra_info("ssl_object")
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        if not der:
            raise PinMismatch("certificate_pin_mismatch: no server certificate")
        pin = spki_sha256(x509.load_der_x509_certificate(der))
        if not any(hmac.compare_digest(pin, wanted) for wanted in self.pins):
            raise PinMismatch("certificate_pin_mismatch")

    def _json(self, call: Any) -> dict[str, Any]:
        if self.pins and not self.server.lower().startswith("https://"):
            raise PinMismatch("certificate_pin_mismatch: pinning needs an https server")
        verify: Any = (
            True if self.ca_file is None else ssl.create_default_context(cafile=self.ca_file)
        )
        try:
            with httpx.Client(timeout=TIMEOUT, follow_redirects=False, verify=verify) as client:
                response = call(client)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(type(exc).__name__) from exc
        if response.status_code != 200:
            if response.status_code in (429,) or response.status_code >= 500:
                raise ServerUnreachable(f"HTTP {response.status_code}")
            raise LicenseRefused(f"http_{response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ServerUnreachable("not JSON") from exc
        if not isinstance(data, dict):
            raise ServerUnreachable("not a JSON object")
        return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LicenseChain desktop license check (demo)")
    parser.add_argument(
        "--server",
        default=os.environ.get("LICENSECHAIN_SERVER"),
        help="license server base URL, e.g. http://127.0.0.1:5000 (env LICENSECHAIN_SERVER)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("LICENSECHAIN_LICENSE_KEY"),
        help="the license key LC-... (env LICENSECHAIN_LICENSE_KEY)",
    )
    parser.add_argument(
        "--issuer",
        default=os.environ.get("LICENSECHAIN_ISSUER"),
        help="also require this exact 'iss', e.g. http://127.0.0.1:5000/v1 "
        "(env LICENSECHAIN_ISSUER; default: not checked)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where the token and the JWKS are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--refresh-before",
        type=float,
        default=300.0,
        help="ask the server for a fresh token when the kept one expires within this many "
        "seconds (default: %(default)g)",
    )
    parser.add_argument(
        "--leeway",
        type=float,
        default=0.0,
        help="seconds of clock difference with the server tolerated when checking the "
        "token's times offline (default: %(default)g)",
    )
    parser.add_argument(
        "--watch",
        type=int,
        default=1,
        help="how many license checks to run before exiting (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=60.0,
        help="seconds to wait between two checks of --watch (default: %(default)g)",
    )
    parser.add_argument(
        "--print-hardware-id",
        action="store_true",
        help="print this machine's hardware id (the hwuid sent to the server) and exit",
    )
    parser.add_argument(
        "--pin-sha256",
        dest="pins",
        action="append",
        default=[],
        help="accept only a server key with this base64 SHA-256 of its SubjectPublicKeyInfo "
        "(RFC 7469 pin-sha256); repeat for a backup key (default: no pinning)",
    )
    parser.add_argument(
        "--ca-file",
        help="PEM bundle of CAs to trust instead of the system's (default: the system's)",
    )
    parser.add_argument(
        "--print-pin",
        metavar="CERT_PEM",
        help="print the pin-sha256 of a PEM certificate and exit (default: run the client)",
    )
    args = parser.parse_args(argv)
    if args.print_pin:
        return args
    if not args.print_hardware_id and (not args.server or not args.key):
        parser.error("--server and --key are required (or LICENSECHAIN_SERVER/_LICENSE_KEY)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_hardware_id:
        print(default_hardware_id())
        return 0
    if args.print_pin:
        print(spki_sha256(x509.load_pem_x509_certificate(Path(args.print_pin).read_bytes())))
        return 0
    client = DesktopLicense(
        server=args.server,
        license_key=args.key,
        state=StateFiles(args.state_dir),
        issuer=args.issuer,
        refresh_before=args.refresh_before,
        leeway=args.leeway,
        pins=tuple(args.pins),
        ca_file=args.ca_file,
    )
    status = Status(False)
    for number in range(max(1, args.watch)):
        if number:
            time.sleep(args.interval)
        status = client.check()
        print(json.dumps(status.to_json()), flush=True)
    return 0 if status.licensed else 1


if __name__ == "__main__":
    sys.exit(main())
