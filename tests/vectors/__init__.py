"""Hostile license-token vectors, kept as data (``hostile_tokens.json``), built when used.

Each case in the JSON file is a recipe: a header and claims (patches on a valid
default), how to sign (the committed *test-only* issuer key, a stranger's key,
HMAC with the issuer's public key bytes, no signature...), an optional mutation of
the finished token, the verifier settings, and the expected outcome. Tokens are
built when used (``case.token``), relative to the current second unless a fixed
``now`` was given, so they suit verifiers that run on the real clock however long
the suite runs (the Flask gate and the middleware reuse them to assert 401 over HTTP).
RSA PKCS#1 v1.5 signatures are deterministic: the same ``now`` gives the same
bytes. See ``README.md`` beside this file for the format and each origin.

API (from a test module in ``tests/``: ``from vectors import load_cases``)::

    load_cases(now=None) -> list[Case]      # hostile: each must be refused
    load_controls(now=None) -> list[Case]   # valid: each must verify (proves the setup)

    case.name, case.token, case.expect_reason, case.expect_check
    case.verifier_kwargs   # issuer, audience, leeway, max_token_bytes for TokenVerifier
    case.jwks              # the trusted JWKS (the issuer test key only)
    case.revoked_jtis, case.revoked_subs   # put these in your denylist first
    case.verifier()        # a TokenVerifier wired with all of the above
    case.app_config()      # the same settings as LICENSECHAIN_* keys for a Flask app
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from flask_licensechain.core.denylist import MemoryDenylist
from flask_licensechain.core.keys import public_jwk
from flask_licensechain.core.keysource import StaticKeySource
from flask_licensechain.core.verifier import TokenVerifier

HERE = Path(__file__).resolve().parent
DATA_FILE = HERE / "hostile_tokens.json"
KEY_DIR = HERE / "keys"
#: lifetime of the "$jti"/"$sub" denylist entries a caller creates for revoked cases
REVOCATION_TTL = 3600


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    origin: str
    #: ``InvalidToken.reason`` expected (None for a control, which must verify)
    expect_reason: str | None
    #: ``TokenRejected.check`` expected (None for a control)
    expect_check: str | None
    verifier_kwargs: Mapping[str, Any]
    jwks: Mapping[str, Any]
    revoked_jtis: tuple[str, ...] = ()
    revoked_subs: tuple[str, ...] = ()
    #: the recipe's section and a fixed clock (None: the time of each access)
    section: str = field(default="cases", repr=False)
    now: int | None = field(default=None, repr=False)

    @property
    def token(self) -> str:
        """The token, built for ``now`` or, when that is None, for the current second:
        a suite that runs for minutes still gets tokens that are fresh when used."""
        return _build(self.section, self.name, self._now())[0]

    @property
    def claims(self) -> Mapping[str, Any]:
        """The claims the token was built from (same clock as ``token``)."""
        return _build(self.section, self.name, self._now())[1]

    def _now(self) -> int:
        return int(time.time()) if self.now is None else self.now

    @property
    def valid(self) -> bool:
        return self.expect_check is None

    def key_source(self) -> StaticKeySource:
        return StaticKeySource(self.jwks)

    def denylist(self) -> MemoryDenylist:
        denylist = MemoryDenylist()
        for jti in self.revoked_jtis:
            denylist.revoke_jti(jti, REVOCATION_TTL)
        for sub in self.revoked_subs:
            denylist.revoke_sub(sub, REVOCATION_TTL)
        return denylist

    def verifier(self, **overrides: Any) -> TokenVerifier:
        kwargs: dict[str, Any] = {"denylist": self.denylist(), **self.verifier_kwargs}
        kwargs.update(overrides)
        return TokenVerifier(self.key_source(), **kwargs)

    def app_config(self) -> dict[str, Any]:
        """``LICENSECHAIN_*`` settings that make a Flask app verify like ``verifier()``.

        The JWKS itself is not a setting: write ``case.jwks`` to a file and set
        ``LICENSECHAIN_JWKS_FILE`` (or serve it and set ``LICENSECHAIN_JWKS_URL``).
        """
        kw = self.verifier_kwargs
        return {
            "LICENSECHAIN_ISSUER": kw.get("issuer"),
            "LICENSECHAIN_AUDIENCE": kw.get("audience"),
            "LICENSECHAIN_LEEWAY": kw.get("leeway", 30),
            "LICENSECHAIN_MAX_TOKEN_BYTES": kw.get("max_token_bytes", 8192),
        }


# -- keys (TEST ONLY: committed on purpose, never trust them anywhere) -----------


@cache
def _private_key(name: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(
        (KEY_DIR / f"{name}-test-key.pem").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def issuer_private_key() -> rsa.RSAPrivateKey:
    """The test issuer's private key, for tests that need more tokens of their own."""
    return _private_key("issuer")


def issuer_kid() -> str:
    return public_jwk(issuer_private_key().public_key())["kid"]


def issuer_jwks() -> dict[str, Any]:
    return {"keys": [public_jwk(issuer_private_key().public_key())]}


@cache
def _stranger_cert_der() -> bytes:
    """A self-signed certificate of the stranger key (for the ``x5c`` cases)."""
    key = _private_key("stranger")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "licensechain.test")])
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=36500))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _hmac_secret(name: str) -> bytes:
    public = issuer_private_key().public_key()
    if name == "issuer_spki_pem":
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if name == "issuer_pkcs1_pem":
        return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    if name == "issuer_jwk_json":
        return json.dumps(public_jwk(public)).encode()
    if name == "issuer_modulus":
        n = public.public_numbers().n
        return n.to_bytes((n.bit_length() + 7) // 8, "big")
    raise ValueError(f"unknown HMAC secret {name!r}")


# -- building ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _Builder:
    def __init__(self, document: Mapping[str, Any], now: int) -> None:
        self.defaults = document["defaults"]
        self.now = now
        self.raw_values: dict[str, str] = {}

    def placeholder(self, value: Any, case_name: str) -> Any:
        """Resolve ``$name`` strings and ``{"$now": s}``-style objects, recursively."""
        if isinstance(value, dict):
            if "$now" in value:
                return self.now + int(value["$now"])
            if "$now_str" in value:
                return str(self.now + int(value["$now_str"]))
            if "$now_float" in value:
                return float(self.now + int(value["$now_float"])) + 0.5
            if "$big" in value:
                return "A" * int(value["$big"])
            if "$json" in value:  # raw JSON text spliced in after serialising
                marker = f"@@raw{len(self.raw_values)}@@"
                self.raw_values[marker] = str(value["$json"])
                return marker
            return {k: self.placeholder(v, case_name) for k, v in value.items()}
        if isinstance(value, list):
            return [self.placeholder(v, case_name) for v in value]
        if isinstance(value, str) and value.startswith("$"):
            return self.named(value, case_name)
        return value

    def named(self, name: str, case_name: str) -> Any:
        stranger = _private_key("stranger").public_key()
        table: dict[str, Any] = {
            "$issuer": self.defaults["verifier"]["issuer"],
            "$audience": self.defaults["verifier"]["audience"],
            "$issuer_kid": issuer_kid(),
            "$stranger_kid": public_jwk(stranger)["kid"],
            "$stranger_jwk": public_jwk(stranger),
            "$stranger_x5c": [base64.b64encode(_stranger_cert_der()).decode("ascii")],
            "$jti": self.jti(case_name),
            "$sub": f"lic_vector_{case_name}",
        }
        if name not in table:
            raise ValueError(f"unknown placeholder {name!r} in case {case_name!r}")
        return table[name]

    @staticmethod
    def jti(case_name: str) -> str:
        # Derived from the name: a fixed ``now`` then gives byte-identical tokens.
        return "vec-" + hashlib.sha256(case_name.encode()).hexdigest()[:24]

    def json_segment(self, value: Mapping[str, Any]) -> bytes:
        text = json.dumps(value, separators=(",", ":"))
        for marker, raw in self.raw_values.items():
            text = text.replace(json.dumps(marker), raw)
        return text.encode("utf-8")

    def raw_text(self, text: str, case_name: str) -> bytes:
        for name in ("$issuer_kid", "$stranger_kid", "$issuer", "$audience"):
            text = text.replace(name, str(self.named(name, case_name)))
        return text.encode("utf-8")

    def build(self, spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        name = spec["name"]
        header: dict[str, Any] = dict(self.defaults["header"])
        header.update(spec.get("header_set", {}))
        for member in spec.get("header_drop", []):
            header.pop(member, None)
        claims: dict[str, Any] = dict(self.defaults["claims"])
        claims.update(spec.get("claims_set", {}))
        for member in spec.get("claims_drop", []):
            claims.pop(member, None)
        header = self.placeholder(header, name)
        claims = self.placeholder(claims, name)
        if "raw_token" in spec:
            return str(self.placeholder(spec["raw_token"], name)), claims
        head = self.raw_text(spec["raw_header"], name) if "raw_header" in spec else None
        body = self.raw_text(spec["raw_payload"], name) if "raw_payload" in spec else None
        head = head if head is not None else self.json_segment(header)
        body = body if body is not None else self.json_segment(claims)
        signing_input = f"{_b64(head)}.{_b64(body)}"
        token = f"{signing_input}.{_b64(sign(spec.get('sign', 'issuer'), signing_input))}"
        for mutation in spec.get("mutate", []):
            token = self.mutate(token, mutation, spec)
        return token, claims

    def mutate(self, token: str, mutation: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
        op, arg = next(iter(mutation.items()))
        if op == "truncate":
            return token[: -int(arg)]
        if op == "truncate_to":
            return token[: int(arg)]
        if op == "keep_segments":
            return ".".join(token.split(".")[: int(arg)])
        if op == "append":
            return token + str(arg)
        if op == "prepend":
            return str(arg) + token
        if op == "insert":  # [segment index, offset, text]
            parts = token.split(".")
            seg, at, text = int(arg[0]), int(arg[1]), str(arg[2])
            parts[seg] = parts[seg][:at] + text + parts[seg][at:]
            return ".".join(parts)
        if op == "noncanonical_tail":  # same bytes, other text: set the unused low bits
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            index = alphabet.index(token[-1])
            flipped = index | 0x0F if index & 0x0F == 0 else index & ~0x0F
            return token[:-1] + alphabet[flipped]
        if op == "signature_from":  # sign other claims, keep only that signature
            other, _ = self.build({"name": spec["name"] + "-other", **arg})
            return token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
        raise ValueError(f"unknown mutation {op!r}")


def sign(how: str, signing_input: str) -> bytes:
    data = signing_input.encode("ascii")
    if how == "none":
        return b""
    if how.startswith("hs256:"):
        return hmac.new(_hmac_secret(how.split(":", 1)[1]), data, hashlib.sha256).digest()
    alg, _, who = how.partition(":") if ":" in how else ("rs256", "", how)
    key = _private_key(who)
    if alg == "rs256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "rs512":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA512())
    if alg == "ps256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(data, pss, hashes.SHA256())
    raise ValueError(f"unknown signing mode {how!r}")


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return document


def _spec(section: str, name: str) -> Mapping[str, Any]:
    return next(spec for spec in _document()[section] if spec["name"] == name)


@lru_cache(maxsize=1024)
def _build(section: str, name: str, now: int) -> tuple[str, Mapping[str, Any]]:
    token, claims = _Builder(_document(), now).build(_spec(section, name))
    return token, MappingProxyType(claims)


def _load(section: str, now: int | None) -> list[Case]:
    document = _document()
    builder = _Builder(document, 0)  # for the clock-free placeholders only
    cases = []
    for spec in document[section]:
        expect = spec.get("expect", {})
        revoked = spec.get("revoked", {})
        cases.append(
            Case(
                name=spec["name"],
                description=spec.get("description", ""),
                origin=spec.get("origin", ""),
                expect_reason=expect.get("reason"),
                expect_check=expect.get("check"),
                verifier_kwargs={**document["defaults"]["verifier"], **spec.get("verifier", {})},
                jwks=issuer_jwks(),
                revoked_jtis=tuple(builder.placeholder(revoked.get("jti", []), spec["name"])),
                revoked_subs=tuple(builder.placeholder(revoked.get("sub", []), spec["name"])),
                section=section,
                now=None if now is None else int(now),
            )
        )
    return cases


def load_cases(now: int | None = None) -> list[Case]:
    """Every hostile case; each must raise ``InvalidToken`` with ``expect_reason``."""
    return _load("cases", now)


def load_controls(now: int | None = None) -> list[Case]:
    """Valid tokens under the same keys and settings; each must verify."""
    return _load("controls", now)
