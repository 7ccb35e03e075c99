"""The gate's engine for the WSGI and ASGI adapters: rules, verifier, rate limits.

For one request: the adapter routes the normalised path to its rule and reads the
token (``GateEngine.reader``); ``evaluate`` (or ``evaluate_async``) then applies the
core gate (``flask_licensechain.core.gate``: same-origin proof for cookie tokens,
``authorize`` against the rule's ``Requirement``), counts the rate limit and says
what to do in a ``GateResult``. The adapters only read headers, apply the header
hygiene and render.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask_licensechain.core.denylist import Denylist, denylist_from_uri
from flask_licensechain.core.errors import LicenseChainError, NotFound, Unavailable
from flask_licensechain.core.gate import (
    CrossSiteRequest,
    TokenReader,
    authorize,
    authorize_async,
)
from flask_licensechain.core.jwks import RemoteJWKS
from flask_licensechain.core.keysource import KeySource, StaticKeySource
from flask_licensechain.core.verifier import LicenseClaims, TokenVerifier

from .clientip import ClientAddress
from .config import GateConfig, Rule
from .identity import IdentityValues, identity_values
from .ratelimit import RateLimiter
from .rules import CompiledRule, RuleTable

log = logging.getLogger("licensechain.gate")

#: Reasons of an allowed request.
REASON_PUBLIC = "public"
REASON_LICENSED = "licensed"
REASON_PREFLIGHT = "cors_preflight"

_WARM_TOKENS_MAX = 10_000

#: Raises ``CrossSiteRequest`` unless a cookie-authenticated request is same-origin.
SameOriginCheck = Callable[[], None]


@dataclass(slots=True)
class GateResult:
    """What the gate made of one request; also put in ``licensechain.result``.

    ``reason`` is ``public``, ``licensed`` or ``cors_preflight`` when allowed, and
    the error's reason (``token_missing``, ``token_invalid``, ``token_expired``,
    ``token_revoked``, ``insufficient_scope``, ``rate_limited``, ``bad_path``...)
    when refused. ``detail`` is for logs only.
    """

    allowed: bool
    reason: str
    status: int
    path: str | None
    rule: Rule | None
    claims: LicenseClaims | None
    error: LicenseChainError | None
    client_ip: str | None = None

    @property
    def subject(self) -> str | None:
        return self.claims.sub if self.claims is not None else None

    @property
    def detail(self) -> str | None:
        return self.error.detail if self.error is not None else None


class GateEngine:
    """Owns the verifier, the token reader, the rule table and the rate limiter of one gate."""

    def __init__(self, config: GateConfig, *, asynchronous: bool = False) -> None:
        self.config = config
        self.keys: KeySource = _key_source(config)
        self.denylist: Denylist | None = (
            denylist_from_uri(config.denylist_url, fail_open=config.denylist_fail_open)
            if config.denylist_url
            else None
        )
        if self.denylist is None:
            log.warning(
                "denylist_url is not set: this gate checks no revocations, so a revoked "
                "token or license passes until the token expires"
            )
        self.verifier = TokenVerifier(
            self.keys,
            issuer=config.issuer,
            audience=config.audience if config.verify_audience else None,
            leeway=config.leeway,
            max_token_bytes=config.max_token_bytes,
            denylist=self.denylist,
            cache_size=config.verified_cache_size,
        )
        self.reader = TokenReader(config.token_sources, config.token_cookie)
        self.rules = RuleTable(
            config.rules,
            default_policy=config.default_policy,
            default_rate_limit=config.ratelimit_default,
            case_sensitive=config.case_sensitive,
        )
        limited = self.rules.default.rate_limit is not None or any(
            c.rate_limit is not None for c in self.rules.compiled
        )
        self.limiter = RateLimiter(config, asynchronous=asynchronous) if limited else None
        self.client_address = ClientAddress(config.trusted_proxies)
        self._trusts_proxies = self.client_address.trusts_anyone
        audience = config.audience
        self._audience: frozenset[str] = frozenset(
            (audience,) if isinstance(audience, str) else (audience or ())
        )
        self._identity: dict[str, tuple[LicenseClaims, IdentityValues]] = {}
        self._warm: set[int] = set()

    # -- the phases ----------------------------------------------------------

    def rate_key(self, claims: LicenseClaims | None, client_ip: str) -> str:
        return "sub:" + claims.sub if claims is not None else "ip:" + client_ip

    def identity(self, claims: LicenseClaims) -> IdentityValues:
        """Header values for a license, cached per token id. A hit must be the very claims
        object the verifier's cache returns, so another token never lends its values."""
        entry = self._identity.get(claims.jti)
        if entry is not None and entry[0] is claims:
            return entry[1]
        if len(self._identity) >= _WARM_TOKENS_MAX:
            self._identity.clear()
        values = identity_values(claims, self._audience)
        self._identity[claims.jti] = (claims, values)
        return values

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        if self._trusts_proxies:
            return self.client_address.resolve(peer, forwarded_for)
        return peer or "unknown"

    @staticmethod
    def _admit(
        compiled: CompiledRule,
        open_: bool,
        token: str | None,
        same_origin: SameOriginCheck | None,
    ) -> str | None:
        """The token to use: refuse a denied path; a cookie token without same-origin
        proof is refused on a licensed path and ignored on an open one."""
        if compiled.deny:
            raise NotFound(reason="no_rule")
        if token is not None and same_origin is not None:
            try:
                same_origin()
            except CrossSiteRequest:
                if not open_:
                    raise
                return None
        return token

    # -- synchronous (WSGI) --------------------------------------------------

    def evaluate(
        self,
        compiled: CompiledRule,
        path: str,
        token: str | None,
        peer: str | None,
        forwarded_for: str | None,
        preflight: bool,
        same_origin: SameOriginCheck | None = None,
    ) -> GateResult:
        """The result for one request; ``same_origin`` is given for a cookie token."""
        claims: LicenseClaims | None = None
        client_ip = self.client_ip(peer, forwarded_for)
        try:
            open_ = compiled.public or preflight
            token = self._admit(compiled, open_, token, same_origin)
            if not open_:
                claims = authorize(self.verifier, token, compiled.requirement)
            elif token is not None:
                claims = self._verify_quietly(token)
            if compiled.rate_limit is not None and self.limiter is not None:
                self.limiter.check(
                    compiled.rate_limit, compiled.name, self.rate_key(claims, client_ip)
                )
        except LicenseChainError as exc:
            return self.refused(exc, compiled, path, claims, client_ip)
        except Exception as exc:
            return self.refused(self._unexpected(exc), compiled, path, claims, client_ip)
        return _allowed(compiled, path, preflight, claims, client_ip)

    def _verify_quietly(self, token: str) -> LicenseClaims | None:
        """On an open path a presented token only adds identity; a bad one is ignored."""
        try:
            return self.verifier.verify(token)
        except LicenseChainError:
            return None

    # -- asynchronous (ASGI) -------------------------------------------------

    async def evaluate_async(
        self,
        compiled: CompiledRule,
        path: str,
        token: str | None,
        peer: str | None,
        forwarded_for: str | None,
        preflight: bool,
        same_origin: SameOriginCheck | None = None,
    ) -> GateResult:
        """``evaluate`` with a cold token verified off the event loop."""
        claims: LicenseClaims | None = None
        client_ip = self.client_ip(peer, forwarded_for)
        try:
            open_ = compiled.public or preflight
            token = self._admit(compiled, open_, token, same_origin)
            if not open_:
                claims = await authorize_async(self.verify_async, token, compiled.requirement)
            elif token is not None:
                try:
                    claims = await self.verify_async(token)
                except LicenseChainError:
                    claims = None
            if compiled.rate_limit is not None and self.limiter is not None:
                await self.limiter.check_async(
                    compiled.rate_limit, compiled.name, self.rate_key(claims, client_ip)
                )
        except LicenseChainError as exc:
            return self.refused(exc, compiled, path, claims, client_ip)
        except Exception as exc:
            return self.refused(self._unexpected(exc), compiled, path, claims, client_ip)
        return _allowed(compiled, path, preflight, claims, client_ip)

    async def verify_async(self, token: str) -> LicenseClaims:
        """A token seen verified before is a cache hit: check it inline. A new one may
        need RSA work or a JWKS fetch, so it runs in a worker thread, off the event loop."""
        # Keyed by hash: a collision only moves one check onto the loop, it never skips one.
        seen = hash(token)
        if seen in self._warm:
            return self.verifier.verify(token)
        claims = await asyncio.to_thread(self.verifier.verify, token)
        if len(self._warm) >= _WARM_TOKENS_MAX:
            self._warm.clear()
        self._warm.add(seen)
        return claims

    # -- shared --------------------------------------------------------------

    def refused(
        self,
        error: LicenseChainError,
        compiled: CompiledRule | None,
        path: str | None,
        claims: LicenseClaims | None = None,
        client_ip: str | None = None,
    ) -> GateResult:
        return GateResult(
            False, error.reason, error.status_code, path,
            compiled.rule if compiled is not None else None, claims, error, client_ip,
        )  # fmt: skip

    @staticmethod
    def _unexpected(exc: Exception) -> LicenseChainError:
        log.exception("license gate failed unexpectedly; refusing the request")
        return Unavailable(reason="gate_error", detail=f"{type(exc).__name__}: {exc}")

    def readiness(self) -> dict[str, bool]:
        """Whether each dependency can serve now: keys loaded, denylist and limiter reachable."""
        checks: dict[str, bool] = {}
        ready = getattr(self.keys, "ready", None)
        try:
            checks["keys"] = bool(ready()) if callable(ready) else bool(self.keys.current())
        except Exception:
            checks["keys"] = False
        if self.denylist is not None:
            try:
                self.denylist.ping()
                checks["denylist"] = True
            except Exception:
                checks["denylist"] = False
        if self.limiter is not None and not self.limiter.asynchronous:
            try:
                checks["ratelimit"] = self.limiter.ping()
            except Exception:
                checks["ratelimit"] = False
        return checks

    def close(self) -> None:
        if self.denylist is not None:
            self.denylist.close()
        close = getattr(self.keys, "close", None)
        if callable(close):
            close()


def _allowed(
    compiled: CompiledRule,
    path: str,
    preflight: bool,
    claims: LicenseClaims | None,
    client_ip: str,
) -> GateResult:
    if compiled.public:
        reason = REASON_PUBLIC
    elif preflight:
        reason = REASON_PREFLIGHT
    else:
        reason = REASON_LICENSED
    return GateResult(True, reason, 200, path, compiled.rule, claims, None, client_ip)


def _key_source(config: GateConfig) -> KeySource:
    if config.key_source is not None:
        return config.key_source
    if config.jwks is not None:
        return StaticKeySource(config.jwks)
    if config.jwks_file is not None:
        return StaticKeySource(config.jwks_file)
    assert config.jwks_url is not None
    source: KeySource = RemoteJWKS(
        config.jwks_url,
        cache_ttl=config.jwks_cache_ttl,
        timeout=config.jwks_timeout,
        allow_http=config.jwks_allow_http,
    )
    return source
