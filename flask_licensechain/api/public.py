"""Public endpoints: verify, validate-hardware, jwks, introspect, health, openapi.json.

No credentials; verify and validate-hardware are rate limited per client IP and per license
key, jwks and introspect per client IP. Verify is the hot path: one store query, one RSA
signature, everything else from memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import jwt
from flask import Blueprint, Response, request

from ..client_ip import client_ip
from ..core.contract import STATUS_REASON, TIER_TO_VT, Reason, build_claims
from ..core.errors import InvalidToken, NotFound
from ..store.analytics import VALID_OUTCOME
from ..store.revocations import wait_until_issuable
from .body import Fields, read_json_body
from .http import NO_STORE, json_response
from .ratelimit import PublicRateLimits
from .serialize import iso, iso_from_unix
from .verification import Decision, decide

if TYPE_CHECKING:
    from ..extension import LicenseChainState

KEY_FIELDS: Final = ("key", "licenseKey", "license_key")
HWUID_FIELDS: Final = ("hwuid", "hardwareId")
APP_ID_FIELDS: Final = ("app_id", "appId")
TOKEN_FIELDS: Final = ("license_token", "token")
MAX_KEY_LENGTH: Final = 256  # longer is malformed; the store answers "not found" above 64
MAX_HWUID_LENGTH: Final = 256
MAX_APP_ID_LENGTH: Final = 128
MAX_USER_AGENT: Final = 512
JWKS_CACHE_CONTROL: Final = "public, max-age=300"
_INTROSPECT_TOKEN_REASONS: Final = frozenset(
    {Reason.TOKEN_INVALID, Reason.TOKEN_EXPIRED, Reason.TOKEN_REVOKED}
)


class BaseUrls:
    """``iss`` and the absolute JWKS URL for the host a request came in on.

    With ``LICENSECHAIN_ISSUER`` set, ``iss`` is that; otherwise it is the API's base URL.
    Answers are memoized per host (bounded: the Host header is client input).
    """

    _MAX_HOSTS = 64

    def __init__(self, issuer: str | None, prefix: str) -> None:
        self._issuer = issuer
        self._prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._by_root: dict[tuple[Any, ...], tuple[str, str]] = {}

    def for_request(self) -> tuple[str, str]:
        environ = request.environ
        # What Werkzeug builds url_root from, as a cheap memo key (ProxyFix rewrites these).
        memo = (
            environ.get("wsgi.url_scheme"),
            environ.get("HTTP_HOST"),
            environ.get("SERVER_NAME"),
            environ.get("SERVER_PORT"),
            environ.get("SCRIPT_NAME"),
        )
        found = self._by_root.get(memo)
        if found is None:
            base = request.url_root.rstrip("/") + self._prefix
            found = (self._issuer or base, base + "/licenses/jwks")
            if len(self._by_root) < self._MAX_HOSTS:
                self._by_root[memo] = found
        return found


def register_public_routes(
    bp: Blueprint, state: LicenseChainState, limits: PublicRateLimits
) -> None:
    settings = state.settings
    store = state.store
    keyring = state.keyring
    assert store is not None and keyring is not None
    licenses = store.licenses
    verifier = state.verifier
    max_body = settings.max_body_bytes
    urls = BaseUrls(settings.issuer, settings.url_prefix)
    tally = store.verification_tally

    def answer(decision: Decision, now: datetime) -> Response:
        lic, app = decision.license, decision.app
        if lic is None or app is None:
            invalid: dict[str, Any] = {"valid": False, "reason": decision.reason}
            if decision.status is not None:
                invalid["status"] = decision.status
            return json_response(invalid, 200, NO_STORE)
        issuer, jwks_uri = urls.for_request()
        now = wait_until_issuable(lic, now)
        iat = int(now.timestamp())
        claims = build_claims(
            issuer=issuer,
            license_id=lic.id,
            app_id=lic.app_id,
            seller_tier=app.tier,
            plan=lic.plan,
            features=lic.features,
            license_exp=int(lic.expires_at.timestamp()) if lic.expires_at else None,
            hw_bound=decision.hw_bound,
            now=iat,
        )
        token = keyring.sign(claims)
        user_agent = request.environ.get("HTTP_USER_AGENT")
        expires_at = iso(lic.expires_at)
        body = {
            "valid": True,
            "status": "ACTIVE",
            "id": lic.id,
            "appId": lic.app_id,
            "plan": lic.plan,
            "features": list(lic.features),
            "expiresAt": expires_at,
            "email": lic.issued_email,
            "verificationType": TIER_TO_VT[app.tier],
            "hwBound": decision.hw_bound,
            "metadata": {
                "ipAddress": client_ip(),
                "userAgent": user_agent[:MAX_USER_AGENT] if user_agent else None,
                "verifiedAt": iso(now),
            },
            "license_token": token,
            "license_token_expires_at": iso_from_unix(claims["exp"]),
            "license_jwks_uri": jwks_uri,
            # LicenseChain's SDK helpers (LicenseValidator) read these two
            "license": {
                "id": lic.id,
                "key": lic.key,
                "status": "ACTIVE",
                "expires_at": expires_at,
                "features": list(lic.features),
                "plan": lic.plan,
            },
            "expires_at": expires_at,
        }
        return json_response(body, 200, NO_STORE)

    def verify_request(*, hwuid_required: bool) -> Response:
        fields = Fields(read_json_body(max_body))
        key = fields.required_string(*KEY_FIELDS, max_length=MAX_KEY_LENGTH)
        hwuid = fields.string(*HWUID_FIELDS, required=hwuid_required, max_length=MAX_HWUID_LENGTH)
        app_id = fields.string(*APP_ID_FIELDS, max_length=MAX_APP_ID_LENGTH)
        now = datetime.now(UTC)
        decision = decide(licenses, key, app_id=app_id, hwuid=hwuid, now=now)
        tally.record(
            outcome=decision.reason or VALID_OUTCOME,
            now=now,
            app_id=decision.app_id,
            license_id=decision.license_id,
        )
        return answer(decision, now)

    @bp.post("/licenses/verify")
    @limits.guard("verify", per_license_key=True)
    def verify() -> Response:
        return verify_request(hwuid_required=False)

    @bp.post("/licenses/validate-hardware")
    @limits.guard("validate-hardware", per_license_key=True)
    def validate_hardware() -> Response:
        return verify_request(hwuid_required=True)

    # (source document, serialized body, ETag), swapped as one tuple so threads never mix them
    jwks_cache: list[tuple[Any, str, str]] = [(None, "", "")]

    @bp.get("/licenses/jwks")
    @limits.guard("jwks")
    def jwks() -> Response:
        document = keyring.jwks()
        source, payload, etag = jwks_cache[0]
        if source is not document:  # the ring was reloaded
            payload = json.dumps({"keys": list(document["keys"])}, separators=(",", ":"))
            etag = hashlib.sha256(payload.encode()).hexdigest()[:32]
            jwks_cache[0] = (document, payload, etag)
        response = Response(payload, mimetype="application/json")
        response.headers["Cache-Control"] = JWKS_CACHE_CONTROL
        response.set_etag(etag)
        response.make_conditional(request)  # 304 when the client's ETag still matches
        return response

    def inactive(reason: str) -> Response:
        return json_response({"active": False, "reason": reason}, 200, NO_STORE)

    @bp.post("/licenses/introspect")
    @limits.guard("introspect")
    def introspect() -> Response:
        fields = Fields(read_json_body(max_body))
        token = fields.required_string(*TOKEN_FIELDS, max_length=max_body)
        try:
            claims = verifier.verify(token)  # signature, claims, then the denylist
        except InvalidToken as exc:
            reason = exc.reason if exc.reason in _INTROSPECT_TOKEN_REASONS else "token_invalid"
            if reason == Reason.TOKEN_REVOKED:
                reason = _revoked_reason(token) or reason
            return inactive(reason)
        lic = licenses.get(claims.sub)
        if lic is None:
            return inactive(Reason.LICENSE_NOT_FOUND)
        status = lic.effective_status(datetime.now(UTC))
        if status != "ACTIVE":
            return inactive(STATUS_REASON[status])
        return json_response({"active": True, **claims.raw, "status": status}, 200, NO_STORE)

    def _revoked_reason(token: str) -> str | None:
        """A denylisted token of a suspended or revoked license says so.

        Only called once the verifier has checked the signature and claims (it refused the
        token for the denylist alone), so reading ``sub`` unverified here is safe.
        """
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        lic = licenses.get(sub) if isinstance(sub, str) else None
        if lic is None:
            return None
        status = lic.effective_status(datetime.now(UTC))
        return STATUS_REASON.get(status)

    @bp.get("/health")
    def health() -> Response:
        return health_response(state)

    openapi_cache: dict[str, str] = {}

    @bp.get("/openapi.json")
    def openapi() -> Response:
        if "payload" not in openapi_cache:
            try:
                from .openapi import openapi_document
            except ImportError:
                raise NotFound("The OpenAPI document is not available.") from None
            openapi_cache["payload"] = json.dumps(openapi_document(settings.url_prefix))
        return Response(openapi_cache["payload"], mimetype="application/json")


def health_response(state: LicenseChainState) -> Response:
    """``GET {prefix}/health`` and ``GET /health``: 200 ``ok`` or 503 ``degraded``."""
    from .. import __version__

    checks = _health_checks(state)
    failing = [name for name, ok in checks.items() if not ok]
    body: dict[str, Any] = {
        "status": "degraded" if failing else "ok",
        "version": __version__,
        "timestamp": iso(datetime.now(UTC)),
        "checks": {name: "ok" if ok else "down" for name, ok in checks.items()},
    }
    if failing:
        body["failing"] = failing
    return json_response(body, 503 if failing else 200, NO_STORE)


def _health_checks(state: LicenseChainState) -> dict[str, bool]:
    probes: dict[str, Callable[[], Any]] = {}
    if state.store is not None:
        probes["store"] = state.store.ping
    probes["denylist"] = state.denylist.ping
    limiter = state.limiter
    if limiter is not None and limiter.enabled:
        probes["ratelimit"] = lambda: _check_ratelimit_storage(limiter.check_storage())
    results: dict[str, bool] = {}
    for name, probe in probes.items():
        try:
            probe()
            results[name] = True
        except Exception:  # any failure of a probe means that dependency is down
            results[name] = False
    return results


def _check_ratelimit_storage(ok: bool) -> None:
    if not ok:
        raise ConnectionError("rate-limit storage unreachable")
