"""The one offline verifier of license tokens (RS256 JWTs, `token_use` licensechain_license_v1).

The server's introspect endpoint, ``@requires_feature`` and the middleware all
call ``TokenVerifier.verify``. The RS256 signature is checked by PyJWT's RSA
algorithm (over ``cryptography``), with the algorithm fixed by us, never taken
from the token. The compact form is taken apart here, strictly (three base64url
segments, canonical encoding, JSON objects; the payload parsed only after the
signature holds): PyJWT's own decoding scans each token character by character
in Python, which costs more than the RSA verify itself. The contract's claim
rules, including all time checks against our injectable clock, are checked here
too, so every rule has one place and one reason code.

Every rejection raises ``TokenRejected`` (an ``InvalidToken``, so HTTP 401):
``reason`` is the contract reason (``token_invalid``, ``token_expired``,
``token_revoked``), ``check`` names the rule that failed (see ``Check``), and
``detail`` is for the log only. Clients only ever see the generic description.

A bounded LRU of verified tokens lets a repeat presentation skip the RSA work.
A hit still checks ``exp``, that its key is still in the key set (same kid and
same key material), and the denylist (the ``jti``, the license ``sub``, and whether the
license narrowed after ``iat``).

Memory bound of the LRU. An entry holds the token string (the key), the parsed
claims and a reference to a shared public key. Its size is estimated once, when
it is stored, as the ``sys.getsizeof`` sum of the token and every object of the
claims plus a fixed overhead (shared objects are counted each time, so the
estimate errs high). The cache keeps at most ``cache_size`` entries (default
10,000) *and* at most ``cache_max_bytes`` estimated bytes (default 64 MiB),
evicting the least recently used first; tokens longer than
``cache_max_token_bytes`` (default 4 KiB) are never cached. A token our server
issues (about 0.9 KiB, a few features) makes an entry of about 4 KiB, so the
entry count binds first (about 40 MiB); the byte budget bounds the cache whatever
an issuer puts in its tokens (a 2 KiB token of many tiny features or nested lists
can cost 20-40 KiB as Python objects). Only tokens whose signature verified with a
trusted key are cached at all. ``benchmarks/verifier`` measures the real figures.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from binascii import a2b_base64
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from sys import getsizeof
from types import MappingProxyType
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .contract import (
    ALGORITHM,
    DEFAULT_LEEWAY,
    DEFAULT_MAX_TOKEN_BYTES,
    MAX_KID_LENGTH,
    TOKEN_USE,
    Reason,
    clamp_leeway,
)
from .denylist import Denylist
from .errors import InvalidToken
from .keysource import KeySource

log = logging.getLogger("licensechain.verifier")

DEFAULT_CACHE_SIZE = 10_000
#: Tokens longer than this are verified but never cached (bounds one LRU entry).
DEFAULT_CACHE_MAX_TOKEN_BYTES = 4 * 1024
#: Estimated bytes the whole verified-token cache may hold (see the module doc).
DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024
#: Fixed cost of an entry beyond the token and the claims' objects: the LRU node,
#: ``_Entry``, ``LicenseClaims``, its ``aud`` tuple and read-only view.
_ENTRY_OVERHEAD = 512
#: ``getsizeof`` of an ASCII str is this plus its length.
_EMPTY_STR_SIZE: Final = getsizeof("")

#: Compact JWS: three base64url segments, no padding, no whitespace: once the base64url
#: alphabet is deleted, exactly the two dots remain. An empty signature passes this
#: shape test so that ``alg: none`` is named as such below.
_B64URL_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

_REQUIRED_CLAIMS: Final = ("exp", "iat", "sub", "jti")
_TIME_CLAIMS: Final = ("exp", "iat", "nbf")
_REQUIRED_SET: Final = frozenset(_REQUIRED_CLAIMS)

#: base64url decoding tables: each character's 6-bit value, the bits a canonical last
#: character leaves unset (by segment length mod 4), the padding binascii wants.
_B64URL_VALUE: Final = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
_UNUSED_BITS: Final = {2: 0x0F, 3: 0x03}
_PADDING: Final = {0: b"", 2: b"==", 3: b"="}
_FROM_B64URL: Final = bytes.maketrans(b"-_", b"+/")

#: Header segments that passed the header checks, and the kid they name. A key set signs
#: with one header per key, so the first token of a key parses it and the rest look it up;
#: bounded (cleared when full) so that made-up headers cannot grow it.
_HEADER_CACHE_SIZE = 256

_RAW_DECODE: Final = json.JSONDecoder().raw_decode

#: PyJWT's RS256 implementation: the only place a signature is checked.
_RS256 = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256)


class Check:
    """Names of the rules a token can fail (``TokenRejected.check``), for logs and metrics."""

    TOO_LARGE: Final = "too_large"
    MALFORMED: Final = "malformed"
    ALG_NOT_ALLOWED: Final = "alg_not_allowed"
    UNSUPPORTED_CRIT: Final = "unsupported_crit"
    BAD_KID: Final = "bad_kid"
    UNKNOWN_KID: Final = "unknown_kid"
    BAD_SIGNATURE: Final = "bad_signature"
    MISSING_CLAIM: Final = "missing_claim"
    BAD_CLAIM: Final = "bad_claim"
    WRONG_TOKEN_USE: Final = "wrong_token_use"  # noqa: S105 - a check name
    ISSUER_MISMATCH: Final = "issuer_mismatch"
    AUDIENCE_MISMATCH: Final = "audience_mismatch"
    EXPIRED: Final = "expired"
    NOT_YET_VALID: Final = "not_yet_valid"
    REVOKED: Final = "revoked"


class TokenRejected(InvalidToken):
    """A token failed one named check. Still an ``InvalidToken`` (401) for every adapter."""

    def __init__(self, check: str, detail: str, reason: str = Reason.TOKEN_INVALID) -> None:
        super().__init__(reason, detail)
        self.check = check


def _reject(check: str, detail: str, reason: str = Reason.TOKEN_INVALID) -> TokenRejected:
    # Details go to the log (repr'd by callers, so attacker text cannot forge log lines).
    log.info("license token rejected: %s: %s", check, detail)
    return TokenRejected(check, detail, reason)


def _compact_jws(token: str) -> tuple[str, str, str, bytes]:
    """Header, payload and signature segments of a compact JWS, and the token as bytes."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raw = b"\x00"  # not base64url: refused just below
    if raw.translate(None, _B64URL_ALPHABET) != b"..":
        raise _reject(Check.MALFORMED, "not a compact JWS of three base64url segments")
    head, body, signature = token.split(".")
    if not head or not body:
        raise _reject(Check.MALFORMED, "not a compact JWS of three base64url segments")
    return head, body, signature, raw


def _segment_bytes(segment: str) -> bytes:
    """Decode one base64url segment, refusing non-canonical encodings.

    The alphabet was checked by ``_compact_jws``, so the only non-canonical forms left
    are an impossible length and set bits in the unused low bits of the last character
    (RFC 4648 section 3.5). (PyJWT's own decoding does these checks with a per-character
    Python loop that costs more than the RSA verify itself.)
    """
    rest = len(segment) % 4
    if rest:
        if rest == 1:
            raise _reject(Check.MALFORMED, "a segment has an impossible base64url length")
        if _B64URL_VALUE[segment[-1]] & _UNUSED_BITS[rest]:
            raise _reject(Check.MALFORMED, "a segment is not canonical base64url")
    return a2b_base64(segment.encode("ascii").translate(_FROM_B64URL) + _PADDING[rest])


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = _loads(_segment_bytes(segment))
    except (ValueError, RecursionError) as exc:
        raise _reject(Check.MALFORMED, f"{what} is not JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise _reject(Check.MALFORMED, f"{what} is not a JSON object")
    return value


def _header_kid(segment: str) -> str:
    """The kid of a header segment that passes the header rules, or ``TokenRejected``."""
    header = _json_object(segment, "header")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise _reject(Check.ALG_NOT_ALLOWED, f"alg {str(alg)[:32]!r} is not {ALGORITHM}")
    if "crit" in header or "b64" in header:
        # We implement no JWS extension, so every 'crit' member is unknown to us.
        raise _reject(Check.UNSUPPORTED_CRIT, "token uses a critical header extension")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise _reject(Check.BAD_KID, f"kid {str(kid)[:64]!r} is missing or unusable")
    # jku/x5u/jwk/x5c are never looked at: the kid and our key set decide.
    return kid


def _loads(data: bytes) -> Any:
    """``json.loads(data)``, with a shorter way for the usual case: UTF-8 text that is
    exactly one object, nothing around it (the same decoder, so the same values)."""
    if data[:1] == b"{" and data[-1:] == b"}":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            value, end = _RAW_DECODE(text)
            if end == len(text):
                return value
    return json.loads(data)


def _signature_ok(signing_input: bytes, key: rsa.RSAPublicKey, signature: bytes) -> bool:
    return bool(_RS256.verify(signing_input, key, signature))


@dataclass(frozen=True, slots=True)
class LicenseClaims:
    """The verified claims of a license token. ``raw`` is read-only; ``to_dict()`` copies."""

    sub: str
    jti: str
    exp: int
    aud: tuple[str, ...]
    plan: str | None
    features: frozenset[str]
    kid: str
    raw: Mapping[str, Any]

    @property
    def license_id(self) -> str:
        return self.sub

    @property
    def app_id(self) -> str | None:
        return self.aud[0] if self.aud else None

    @property
    def iat(self) -> int:
        value: int = self.raw["iat"]
        return value

    @property
    def issuer(self) -> str | None:
        value = self.raw.get("iss")
        return value if isinstance(value, str) else None

    def has_features(self, *features: str) -> bool:
        return self.features.issuperset(features)

    def has_any_feature(self, *features: str) -> bool:
        return not self.features.isdisjoint(features)

    def to_dict(self) -> dict[str, Any]:
        """A fresh, JSON-serialisable copy of all claims (safe to mutate)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self.raw.items()}

    def __getitem__(self, name: str) -> Any:
        return self.raw[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.raw.get(name, default)


class _Entry:
    """One LRU entry: the claims, the key object that verified them, its estimated size."""

    __slots__ = ("claims", "key", "size")

    def __init__(self, claims: LicenseClaims, key: rsa.RSAPublicKey, size: int) -> None:
        self.claims = claims
        self.key = key
        self.size = size


def _estimated_size(token: str, claims: LicenseClaims) -> int:
    """Bytes an entry keeps alive, erring high (shared objects are counted each time)."""
    raw = claims.raw
    # A plain dict of the same size, faster to walk than the read-only view.
    payload = raw.copy() if isinstance(raw, MappingProxyType) else dict(raw)
    values = payload.values()
    size = _ENTRY_OVERHEAD + getsizeof(token) + getsizeof(claims.features) + getsizeof(payload)
    names = "".join(payload)
    if names.isascii():  # claim names usually are: each costs an empty str plus its length
        size += _EMPTY_STR_SIZE * len(payload) + len(names)
    else:
        size += sum(map(getsizeof, payload))
    size += sum(map(getsizeof, values))
    for value in values:
        kind = type(value)
        if kind is list:  # features, aud: usually strings only
            size += sum(map(getsizeof, value))
            for item in value:
                if type(item) is dict or type(item) is list:
                    size += _nested_size(item) - getsizeof(item)  # counted just above
        elif kind is dict:
            size += _nested_size(value) - getsizeof(value)  # the container is counted above
    return size


def _nested_size(value: Any) -> int:
    """``getsizeof`` summed over a JSON list or object and everything in it."""
    size = 0
    stack: list[Any] = [value]  # JSON gives only dict, list and scalars
    while stack:
        obj = stack.pop()
        size += getsizeof(obj)
        kind = type(obj)
        if kind is dict:
            stack.extend(obj)
            stack.extend(obj.values())
        elif kind is list:
            stack.extend(obj)
    return size


class TokenVerifier:
    """Verify license tokens against a key source, issuer, audience and denylist.

    ``leeway`` is clamped to 0..300 s. ``issuer``/``audience`` of ``None`` (or empty)
    are not checked. ``clock`` returns unix seconds and is used for every time rule.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        leeway: float = DEFAULT_LEEWAY,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        denylist: Denylist | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
        cache_max_token_bytes: int = DEFAULT_CACHE_MAX_TOKEN_BYTES,
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
    ) -> None:
        self.keys = keys
        self.issuer = issuer or None
        if isinstance(audience, str):
            audience = (audience,)
        audiences = frozenset(a for a in audience or () if a)
        self.audience: frozenset[str] | None = audiences or None
        self.leeway = clamp_leeway(leeway)
        self.max_token_bytes = max(0, int(max_token_bytes))
        self.denylist = denylist
        self.cache_size = max(0, int(cache_size))
        self.cache_max_token_bytes = max(0, int(cache_max_token_bytes))
        self.cache_max_bytes = max(0, int(cache_max_bytes))
        self._cache_bytes = 0
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._headers: dict[str, str] = {}
        #: Running counts of cache lookups, for metrics (the gateway exports them);
        #: plain increments, so approximate when threads race.
        self.cache_hits = 0
        self.cache_misses = 0

    # -- hot path ---------------------------------------------------------

    def verify(self, token: str, *, audience: str | frozenset[str] | None = None) -> LicenseClaims:
        """Return the claims of a valid token.

        ``audience`` (one app id, or a set of which ``aud`` must name one) adds a
        per-call ``aud`` requirement on top of the configured one: an issuer's shared
        verifier accepts every app's tokens (introspect needs that), while a gate in
        that same app requires its own app id.

        Raises ``TokenRejected`` (an ``InvalidToken``, 401) or ``Unavailable`` (503)
        when the key source or the denylist cannot answer.
        """
        claims = self._verify(token)
        if audience is not None and (
            audience not in claims.aud
            if isinstance(audience, str)
            else audience.isdisjoint(claims.aud)
        ):
            raise _reject(Check.AUDIENCE_MISMATCH, f"aud {claims.aud!r} lacks {audience!r:.200}")
        return claims

    def _verify(self, token: str) -> LicenseClaims:
        # The size cap comes before anything else looks at the token, the cache included.
        if not isinstance(token, str):
            raise _reject(Check.MALFORMED, f"token is a {type(token).__name__}, not a str")
        if len(token) > self.max_token_bytes:
            raise _reject(Check.TOO_LARGE, f"token of {len(token)} chars > {self.max_token_bytes}")
        entry = self._cache.get(token)
        if entry is not None:
            claims = self._cache_hit(token, entry)
            if claims is not None:
                self.cache_hits += 1
                self._check_denylist(claims)
                return claims
        self.cache_misses += 1
        claims, key = self._verify_cold(token)
        if self.cache_size and len(token) <= self.cache_max_token_bytes:
            self._remember(token, _Entry(claims, key, _estimated_size(token, claims)))
        self._check_denylist(claims)
        return claims

    def _cache_hit(self, token: str, entry: _Entry) -> LicenseClaims | None:
        """The cached claims if still good; ``None`` to verify afresh."""
        claims = entry.claims
        if claims.exp <= self._clock() - self.leeway:
            self._forget(token)
            raise _reject(Check.EXPIRED, "cached token expired", Reason.TOKEN_EXPIRED)
        current = self.keys.current().get(claims.kid)
        if current is not entry.key:
            # Sources may rebuild key objects on refresh: same material keeps the entry.
            if current is None or current != entry.key:
                self._forget(token)  # its key left the set: verify afresh (and fail)
                return None
            entry.key = current
        with self._cache_lock:
            if token in self._cache:
                self._cache.move_to_end(token)
        return claims

    def _check_denylist(self, claims: LicenseClaims) -> None:
        denylist = self.denylist
        if denylist is not None and denylist.is_revoked(claims.jti, claims.sub, claims.iat):
            raise _reject(
                Check.REVOKED,
                f"jti {claims.jti!r} or sub {claims.sub!r} (iat {claims.iat}) is revoked",
                Reason.TOKEN_REVOKED,
            )

    # -- cold path --------------------------------------------------------

    def _verify_cold(self, token: str) -> tuple[LicenseClaims, rsa.RSAPublicKey]:
        head, body, signature, raw = _compact_jws(token)
        kid = self._headers.get(head)
        if kid is None:
            kid = _header_kid(head)
            if len(self._headers) >= _HEADER_CACHE_SIZE:
                self._headers.clear()
            self._headers[head] = kid
        key = self.keys.current().get(kid)
        if key is None:
            key = self.keys.lookup_unknown(kid)
            if key is None:
                raise _reject(Check.UNKNOWN_KID, f"kid {kid[:64]!r} is not in the key set")
        signing_input = raw[: len(head) + 1 + len(body)]
        if not _signature_ok(signing_input, key, _segment_bytes(signature)):
            raise _reject(Check.BAD_SIGNATURE, "signature does not verify")
        # The payload is parsed only once its signature holds.
        return self._check_claims(_json_object(body, "payload"), kid), key

    def _check_claims(self, payload: dict[str, Any], kid: str) -> LicenseClaims:
        if not _REQUIRED_SET <= payload.keys():
            missing = next(name for name in _REQUIRED_CLAIMS if name not in payload)
            raise _reject(Check.MISSING_CLAIM, f"claim {missing!r} is missing")
        # exp and iat are present (checked just above); nbf is optional.
        if (
            type(payload["exp"]) is not int
            or type(payload["iat"]) is not int
            or ("nbf" in payload and type(payload["nbf"]) is not int)
        ):
            name = next(n for n in _TIME_CLAIMS if n in payload and type(payload[n]) is not int)
            raise _reject(Check.BAD_CLAIM, f"{name} must be an integer")
        if payload.get("token_use") != TOKEN_USE:
            raise _reject(Check.WRONG_TOKEN_USE, f"token_use {payload.get('token_use')!r}")
        sub, jti, exp, iat = payload["sub"], payload["jti"], payload["exp"], payload["iat"]
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
            raise _reject(Check.BAD_CLAIM, "sub and jti must be non-empty strings")
        now = self._clock()
        if exp <= now - self.leeway:
            raise _reject(Check.EXPIRED, f"expired at {exp}", Reason.TOKEN_EXPIRED)
        if iat > now + self.leeway:
            raise _reject(Check.NOT_YET_VALID, f"issued in the future ({iat})")
        nbf = payload.get("nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise _reject(Check.NOT_YET_VALID, f"not valid before {nbf}")
        if self.issuer is not None and payload.get("iss") != self.issuer:
            raise _reject(Check.ISSUER_MISMATCH, f"iss {str(payload.get('iss'))[:200]!r}")
        aud = payload.get("aud")
        if isinstance(aud, str):
            auds: tuple[str, ...] = (aud,)
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            auds = tuple(aud)
        elif aud is None:
            auds = ()
        else:
            raise _reject(Check.BAD_CLAIM, "aud must be a string or a list of strings")
        if self.audience is not None and self.audience.isdisjoint(auds):
            raise _reject(Check.AUDIENCE_MISMATCH, f"aud {str(aud)[:200]!r}")
        features = payload.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise _reject(Check.BAD_CLAIM, "features must be a list of strings")
        plan = payload.get("plan")
        if plan is not None and not isinstance(plan, str):
            raise _reject(Check.BAD_CLAIM, "plan must be a string")
        return LicenseClaims(
            sub=sub,
            jti=jti,
            exp=exp,
            aud=auds,
            plan=plan,
            features=frozenset(features),
            kid=kid,
            raw=MappingProxyType(payload),
        )

    # -- cache management -------------------------------------------------

    def _remember(self, token: str, entry: _Entry) -> None:
        with self._cache_lock:
            old = self._cache.pop(token, None)
            if old is not None:
                self._cache_bytes -= old.size
            self._cache[token] = entry
            self._cache_bytes += entry.size
            while self._cache and (
                len(self._cache) > self.cache_size or self._cache_bytes > self.cache_max_bytes
            ):
                _, evicted = self._cache.popitem(last=False)
                self._cache_bytes -= evicted.size

    def _forget(self, token: str) -> None:
        with self._cache_lock:
            entry = self._cache.pop(token, None)
            if entry is not None:
                self._cache_bytes -= entry.size

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._cache_bytes = 0

    @property
    def cache_bytes(self) -> int:
        """Estimated bytes held by the verified-token cache (always <= cache_max_bytes)."""
        return self._cache_bytes

    @property
    def cache_len(self) -> int:
        return len(self._cache)
