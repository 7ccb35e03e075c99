"""The one offline verifier of license tokens (CONTRACT.md section 1).

The server's introspect endpoint, ``@requires_feature`` and the middleware all
call ``TokenVerifier.verify``. PyJWT does the JWS work with the algorithm fixed
by us (never taken from the token); the contract's own rules are checked here.

A bounded LRU of verified tokens lets a repeat presentation skip the RSA work.
A hit still checks ``exp``, that its key is still trusted, and the denylist.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

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
_REQUIRED = ["exp", "iat", "sub", "jti"]
_DECODE_OPTIONS: Any = {
    "require": _REQUIRED,
    # iss and aud are checked below, with the contract's exact rules.
    "verify_aud": False,
    "verify_iss": False,
}


@dataclass(frozen=True, slots=True)
class LicenseClaims:
    """The verified claims of a license token."""

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

    def has_features(self, *features: str) -> bool:
        return self.features.issuperset(features)

    def has_any_feature(self, *features: str) -> bool:
        return not self.features.isdisjoint(features)

    def __getitem__(self, name: str) -> Any:
        return self.raw[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.raw.get(name, default)


class TokenVerifier:
    """Verify license tokens against a key source, issuer, audience and denylist."""

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
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        if isinstance(audience, str):
            audience = (audience,)
        self.audience: frozenset[str] | None = frozenset(audience) if audience else None
        self.leeway = clamp_leeway(leeway)
        self.max_token_bytes = int(max_token_bytes)
        self.denylist = denylist
        self.cache_size = max(0, int(cache_size))
        self._clock = clock
        self._cache: OrderedDict[str, LicenseClaims] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- hot path ---------------------------------------------------------

    def verify(self, token: str) -> LicenseClaims:
        """Return the claims of a valid token or raise ``InvalidToken`` (or ``Unavailable``)."""
        claims = self._cache.get(token)
        if claims is not None:
            if claims.exp <= self._clock() - self.leeway:
                self._forget(token)
                raise InvalidToken(Reason.TOKEN_EXPIRED)
            if claims.kid in self.keys.current():
                self._check_denylist(claims)
                try:
                    self._cache.move_to_end(token)
                except KeyError:  # evicted by another thread meanwhile
                    pass
                return claims
            self._forget(token)  # its key left the key set: verify afresh (and fail)
        claims = self._verify_cold(token)
        self._check_denylist(claims)
        if self.cache_size:
            with self._cache_lock:
                self._cache[token] = claims
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return claims

    def _check_denylist(self, claims: LicenseClaims) -> None:
        if self.denylist is not None and self.denylist.is_revoked(claims.jti, claims.sub):
            raise InvalidToken(Reason.TOKEN_REVOKED)

    # -- cold path --------------------------------------------------------

    def _verify_cold(self, token: str) -> LicenseClaims:
        if not isinstance(token, str):
            raise InvalidToken(detail="token is not a string")
        if len(token) > self.max_token_bytes:
            raise InvalidToken(detail=f"token longer than {self.max_token_bytes} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(detail=f"malformed token: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(detail=f"algorithm {header.get('alg')!r} is not accepted")
        if "crit" in header:
            raise InvalidToken(detail="token has a 'crit' header member")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise InvalidToken(detail="token has no usable kid")
        key = self.keys.current().get(kid)
        if key is None:
            key = self.keys.lookup_unknown(kid)
            if key is None:
                raise InvalidToken(detail=f"unknown kid {kid[:64]!r}")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                options=_DECODE_OPTIONS,
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken(Reason.TOKEN_EXPIRED, "token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(detail=f"{type(exc).__name__}: {exc}") from None
        return self._check_claims(payload, kid)

    def _check_claims(self, payload: dict[str, Any], kid: str) -> LicenseClaims:
        if payload.get("token_use") != TOKEN_USE:
            raise InvalidToken(detail="wrong token_use")
        sub, jti, exp = payload["sub"], payload["jti"], payload["exp"]
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
            raise InvalidToken(detail="sub and jti must be non-empty strings")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise InvalidToken(detail="exp must be an integer")
        if self.issuer is not None and payload.get("iss") != self.issuer:
            raise InvalidToken(detail="issuer mismatch")
        aud = payload.get("aud")
        if isinstance(aud, str):
            auds: tuple[str, ...] = (aud,)
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            auds = tuple(aud)
        elif aud is None:
            auds = ()
        else:
            raise InvalidToken(detail="aud must be a string or a list of strings")
        if self.audience is not None and self.audience.isdisjoint(auds):
            raise InvalidToken(detail="audience mismatch")
        features = payload.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidToken(detail="features must be a list of strings")
        plan = payload.get("plan")
        if plan is not None and not isinstance(plan, str):
            raise InvalidToken(detail="plan must be a string")
        return LicenseClaims(
            sub=sub,
            jti=jti,
            exp=exp,
            aud=auds,
            plan=plan,
            features=frozenset(features),
            kid=kid,
            raw=payload,
        )

    # -- cache management -------------------------------------------------

    def _forget(self, token: str) -> None:
        with self._cache_lock:
            self._cache.pop(token, None)

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)
