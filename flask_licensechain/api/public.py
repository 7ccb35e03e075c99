"""Public endpoints: verify, validate-hardware, jwks, introspect, health.

No credentials; verify and validate-hardware are rate limited per client IP and per license
key, jwks and introspect per client IP. Verify is the hot path: one store query, one RSA
signature, everything else from memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import jwt
from flask import Response, request

from .. import field_limits as limits
from ..client_ip import client_ip
from ..core.contract import STATUS_REASON, TIER_TO_VT, Reason, build_claims
from ..core.errors import InvalidToken
from ..monitoring.signals import observe_verification
from ..serialize import iso, iso_from_unix
from ..services.licenses import bind_device
from ..state import IssuerState, get_issuer_state
from ..store import Actor, BindOutcome, LicenseRecord
from ..store.analytics import VALID_OUTCOME
from ..store.revocations import wait_until_issuable
from ..version import __version__
from .blueprint import bp, root_bp
from .body import Fields, read_json_body
from .http import NO_STORE, json_response, request_id
from .names import APP_ID_FIELDS, HWUID_FIELDS, KEY_FIELDS, TOKEN_FIELDS
from .ratelimit import rate_limited
from .verification import Decision, decide

JWKS_CACHE_CONTROL: Final = "public, max-age=300"
_INTROSPECT_TOKEN_REASONS: Final = frozenset(
    {Reason.TOKEN_INVALID, Reason.TOKEN_EXPIRED, Reason.TOKEN_REVOKED}
)


def _answer(state: IssuerState, decision: Decision, now: datetime) -> Response:
    lic, app = decision.license, decision.app
    if lic is None or app is None:
        invalid: dict[str, Any] = {"valid": False, "reason": decision.reason}
        if decision.status is not None:
            invalid["status"] = decision.status
        return json_response(invalid, 200, NO_STORE)
    issuer, jwks_uri = state.urls.for_request()
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
    token = state.keyring.sign(claims)
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
            "userAgent": user_agent[: limits.USER_AGENT] if user_agent else None,
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


def _verify_request(*, hwuid_required: bool) -> Response:
    state = get_issuer_state()
    fields = Fields(read_json_body(state.settings.max_body_bytes))
    key = fields.required_string(*KEY_FIELDS, max_length=limits.LICENSE_KEY)
    hwuid = fields.string(*HWUID_FIELDS, required=hwuid_required, max_length=limits.HWUID)
    app_id = fields.string(*APP_ID_FIELDS, max_length=limits.APP_ID)
    now = datetime.now(UTC)
    decision = decide(
        state.store.licenses, key, app_id=app_id, hwuid=hwuid, now=now, bind=_bind_for(state)
    )
    state.store.verification_tally.record(
        outcome=decision.reason or VALID_OUTCOME,
        now=now,
        app_id=decision.app_id,
        license_id=decision.license_id,
    )
    observe_verification(state, decision)
    return _answer(state, decision, now)


def client_actor(license_id: str) -> Actor:
    """The ``Actor`` of a change a public request makes (a device bound on verify): the
    license whose key it presented, with the request id, client IP and user agent."""
    user_agent = request.headers.get("User-Agent")
    return Actor(
        kind="client",
        id=license_id,
        request_id=request_id(),
        ip=client_ip(),
        user_agent=user_agent[: limits.USER_AGENT] if user_agent else None,
    )


def _bind_for(state: IssuerState) -> Callable[[LicenseRecord, str, datetime], BindOutcome]:
    def bind(lic: LicenseRecord, hwuid: str, now: datetime) -> BindOutcome:
        return bind_device(state.store, client_actor(lic.id), lic, hwuid=hwuid, now=now)

    return bind


@bp.post("/licenses/verify")
@rate_limited("verify", per_license_key=True)
def verify() -> Response:
    """Verify a license key (and bind a hardware id); a valid one gets a fresh token."""
    return _verify_request(hwuid_required=False)


@bp.post("/licenses/validate-hardware")
@rate_limited("validate-hardware", per_license_key=True)
def validate_hardware() -> Response:
    """As ``verify``, with the hardware id required."""
    return _verify_request(hwuid_required=True)


@bp.get("/licenses/jwks")
@rate_limited("jwks")
def jwks() -> Response:
    """The public signing keys, with an ETag (304 when the client's copy is current)."""
    state = get_issuer_state()
    document = state.keyring.jwks()
    source, payload, etag = state.jwks_json
    if source is not document:  # the ring was reloaded
        payload = json.dumps({"keys": list(document["keys"])}, separators=(",", ":"))
        etag = hashlib.sha256(payload.encode()).hexdigest()[:32]
        state.jwks_json = (document, payload, etag)
    response = Response(payload, mimetype="application/json")
    response.headers["Cache-Control"] = JWKS_CACHE_CONTROL
    response.set_etag(etag)
    response.make_conditional(request)  # 304 when the client's ETag still matches
    return response


def _inactive(reason: str) -> Response:
    return json_response({"active": False, "reason": reason}, 200, NO_STORE)


@bp.post("/licenses/introspect")
@rate_limited("introspect")
def introspect() -> Response:
    """A token's claims and its license's live status, or why it is not active."""
    state = get_issuer_state()
    max_body = state.settings.max_body_bytes
    fields = Fields(read_json_body(max_body))
    token = fields.required_string(*TOKEN_FIELDS, max_length=max_body)
    licenses = state.store.licenses
    try:
        claims = state.verifier.verify(token)  # signature, claims, then the denylist
    except InvalidToken as exc:
        reason = exc.reason if exc.reason in _INTROSPECT_TOKEN_REASONS else "token_invalid"
        if reason == Reason.TOKEN_REVOKED:
            reason = _revoked_reason(state, token) or reason
        return _inactive(reason)
    lic = licenses.get(claims.sub)
    if lic is None:
        return _inactive(Reason.LICENSE_NOT_FOUND)
    status = lic.effective_status(datetime.now(UTC))
    if status != "ACTIVE":
        return _inactive(STATUS_REASON[status])
    return json_response({"active": True, **claims.raw, "status": status}, 200, NO_STORE)


def _revoked_reason(state: IssuerState, token: str) -> str | None:
    """A denylisted token of a suspended or revoked license says so.

    Only called once the verifier has checked the signature and claims (it refused the
    token for the denylist alone), so reading ``sub`` unverified here is safe.
    """
    sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
    lic = state.store.licenses.get(sub) if isinstance(sub, str) else None
    if lic is None:
        return None
    status = lic.effective_status(datetime.now(UTC))
    return STATUS_REASON.get(status)


@bp.get("/health")
def health() -> Response:
    """``ok``, or 503 ``degraded`` naming the dependencies that are down."""
    return _health_response()


@root_bp.get("/health")
def root_health() -> Response:
    """``GET /health`` without the API prefix: the same answer as ``{prefix}/health``."""
    return _health_response()


def _health_response() -> Response:
    checks = _health_checks(get_issuer_state())
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


def _health_checks(state: IssuerState) -> dict[str, bool]:
    probes: dict[str, Callable[[], Any]] = {"store": state.store.ping}
    probes["denylist"] = state.denylist.ping
    limiter = state.limiter
    if limiter.enabled:
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
