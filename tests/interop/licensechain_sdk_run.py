"""Drives LicenseChain's Python SDK (``licensechain-sdk``) against a server, as a seller would.

Run by tests/test_sdk_real.py with the interpreter of a throwaway virtualenv that has the SDK,
``requests``, PyJWT and ``cryptography`` installed; never imported by the test suite itself.
Environment: ``LC_BASE_URL`` (the API base, ``.../v1``), ``LC_API_KEY`` (an admin key) and
``LC_ISSUER`` (the ``iss`` the server writes). Prints one JSON object as its last line:
``{"<SDK method>": "ok" | "<error>", ...}``. A method is ``ok`` only when its answer was
checked, not merely when it did not raise.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from licensechain import Client, NotFoundError, UnknownError, verify_license_assertion_jwt
from licensechain.client import LicenseChainClient
from licensechain.exceptions import NotFoundError as AsyncNotFoundError
from licensechain.license_validator import LicenseValidator

BASE = os.environ["LC_BASE_URL"]
API_KEY = os.environ["LC_API_KEY"]
ISSUER = os.environ["LC_ISSUER"]
RESULTS: dict[str, str] = {}


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def record(name: str, call: Callable[[], Any]) -> Any:
    try:
        value = call()
    except Exception as error:
        RESULTS[name] = f"{type(error).__name__}: {error}"
        traceback.print_exc(file=sys.stderr)
        return None
    RESULTS[name] = "ok"
    return value


async def arecord(name: str, call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        value = await call()
    except Exception as error:
        RESULTS[name] = f"{type(error).__name__}: {error}"
        traceback.print_exc(file=sys.stderr)
        return None
    RESULTS[name] = "ok"
    return value


def checked(value: Any, condition: Callable[[Any], bool], what: str) -> Any:
    check(condition(value), f"{what}: {value!r}")
    return value


async def async_client() -> None:
    """``LicenseChainClient`` (httpx, async) and ``LicenseValidator``."""
    lc = LicenseChainClient(API_KEY, base_url=BASE, retry_attempts=1, retry_delay=0.01)
    p = "LicenseChainClient."

    async def health() -> Any:
        return checked(await lc.get_health_check(), lambda b: b["status"] == "ok", "health")

    await arecord(p + "get_health_check", health)

    async def status() -> Any:
        return checked(await lc.get_system_status(), lambda b: b["status"] == "ok", "status")

    await arecord(p + "get_system_status", status)

    async def create_app() -> Any:
        app = await lc.create_application(
            "SDK async app", "made by the SDK", None, ["https://shop.example"]
        )
        check(app["allowedOrigins"] == ["https://shop.example"], f"origins {app}")
        return app

    app = await arecord(p + "create_application", create_app)
    if app is None:
        return
    app_id = app["id"]

    async def list_apps() -> Any:
        body = await lc.list_applications(page=1, limit=20)
        check(app_id in [a["id"] for a in body["apps"]], f"list {body}")

    await arecord(p + "list_applications", list_apps)

    async def get_app() -> Any:
        check((await lc.get_application(app_id))["name"] == "SDK async app", "get_application")

    await arecord(p + "get_application", get_app)

    async def update_app() -> Any:
        body = await lc.update_application(
            app_id, {"description": "updated", "webhook_url": "http://127.0.0.1:9/lc"}
        )
        check(body["description"] == "updated", f"update {body}")
        check(body["webhookUrl"] == "http://127.0.0.1:9/lc", f"update {body}")

    await arecord(p + "update_application", update_app)

    async def create_license() -> Any:
        lic = await lc.create_license(app_id, "buyer@example.com", "Buyer", None, {"order": "A-1"})
        check(lic["appId"] == app_id and lic["issuedTo"] == "Buyer", f"create {lic}")
        check(lic["metadata"] == {"order": "A-1"} and lic["expiresAt"] is None, f"create {lic}")
        return lic

    lic = await arecord(p + "create_license", create_license)
    dated = await lc.create_license(app_id, "b2@example.com", expires_at="2031-01-01T00:00:00Z")
    if lic is None:
        return
    lic_id, key = lic["id"], lic["key"]

    async def list_licenses() -> Any:
        body = await lc.list_licenses(app_id=app_id, page=1, limit=20, status="active")
        check({lic_id, dated["id"]} == {x["id"] for x in body["licenses"]}, f"list {body}")

    await arecord(p + "list_licenses", list_licenses)

    async def get_license() -> Any:
        check((await lc.get_license(key))["id"] == lic_id, "by key")
        check((await lc.get_license(lic_id))["key"] == key, "by id")

    await arecord(p + "get_license", get_license)

    async def update_license() -> Any:
        body = await lc.update_license(lic_id, {"plan": "PRO", "metadata": {"order": "A-2"}})
        check(body["plan"] == "PRO" and body["metadata"] == {"order": "A-2"}, f"update {body}")
        suspended = await lc.update_license(lic_id, {"status": "suspended"})
        check(suspended["status"] == "SUSPENDED", f"suspend by update {suspended}")

    await arecord(p + "update_license", update_license)

    async def activate() -> Any:
        check((await lc.activate_license(lic_id))["status"] == "ACTIVE", "activate")

    await arecord(p + "activate_license", activate)

    async def extend() -> Any:
        body = await lc.extend_license(lic_id, "2032-01-01T00:00:00Z")
        check(body["expiresAt"] == "2032-01-01T00:00:00.000Z", f"extend {body}")

    await arecord(p + "extend_license", extend)

    async def validate() -> Any:
        body = await lc.validate_license(key, app_id, hwuid="sdk-async-1")
        check(body["valid"] is True and body["hwBound"] is True, f"validate {body}")
        check(body["license"]["key"] == key, f"nested license {body}")
        other = await lc.validate_license(key, "app_someone_else", hwuid="sdk-async-1")
        check(other == {"valid": False, "reason": "app_mismatch"}, f"app mismatch {other}")

    await arecord(p + "validate_license", validate)

    async def revoke() -> Any:
        body = await lc.revoke_license(dated["id"], "chargeback")
        check(body["status"] == "REVOKED", f"revoke {body}")
        again = await lc.validate_license(dated["key"])
        check(again["reason"] == "license_revoked", f"after revoke {again}")

    await arecord(p + "revoke_license", revoke)

    for name, call in (
        ("get_analytics", lambda: lc.get_analytics(metric="30d")),
        ("get_dashboard_insights", lc.get_dashboard_insights),
        ("get_advanced_analytics", lambda: lc.get_advanced_analytics(metric="7d")),
    ):

        async def analytics(call: Any = call) -> Any:
            body = await call()
            check(sum(d["total"] for d in body["days"]) >= 1, f"analytics {body}")
            check(body["licenses"]["total"] >= 2, f"analytics {body}")

        await arecord(p + name, analytics)

    async def license_analytics() -> Any:
        body = await lc.get_license_analytics(lic_id)
        check(body["totals"]["valid"] >= 1, f"license analytics {body}")

    await arecord(p + "get_license_analytics", license_analytics)

    async def usage() -> Any:
        body = await lc.get_usage_stats(app_id, "30d")
        check(body["appId"] == app_id and body["totals"]["total"] >= 3, f"usage {body}")

    await arecord(p + "get_usage_stats", usage)

    async def regenerate() -> Any:
        body = await lc.regenerate_api_key(app_id)
        check(body["appId"] == app_id and body["key"].startswith("lc_"), f"regenerate {body}")
        limited = LicenseChainClient(body["key"], base_url=BASE, retry_attempts=1)
        try:
            check((await limited.get_license(lic_id))["id"] == lic_id, "app key reads")
            check((await limited.list_applications())["total"] == 1, "app key sees one app")
        finally:
            await limited.close()

    await arecord(p + "regenerate_api_key", regenerate)

    validator = LicenseValidator(API_KEY, base_url=BASE, retry_attempts=1, retry_delay=0.01)
    v = "LicenseValidator."
    perpetual = await lc.create_license(app_id, "v@example.com")

    async def v_validate() -> Any:
        result = await validator.validate_license(perpetual["key"])
        check(result.valid and result.license_key == perpetual["key"], f"validator {result}")
        check(result.expires_at is None, f"validator {result}")

    await arecord(v + "validate_license", v_validate)

    async def v_is_valid() -> Any:
        check(await validator.is_valid(perpetual["key"]), "is_valid")
        check(not await validator.is_valid("LC-ZZZZZZ-ZZZZZZ-ZZZZZZ"), "is_valid unknown")

    await arecord(v + "is_valid", v_is_valid)

    async def v_info() -> Any:
        info = await validator.get_license_info(perpetual["key"])
        check(info is not None and info["id"] == perpetual["id"], f"info {info}")

    await arecord(v + "get_license_info", v_info)

    async def v_expired() -> Any:
        check(not await validator.is_expired(perpetual["key"]), "perpetual is not expired")
        check(await validator.is_expired(dated["key"]), "a revoked license counts as expired")

    await arecord(v + "is_expired", v_expired)

    async def v_days() -> Any:
        days = await validator.get_days_until_expiration(perpetual["key"])
        check(days is None, f"days {days}")

    await arecord(v + "get_days_until_expiration", v_days)

    async def v_many() -> Any:
        results = await validator.validate_licenses([perpetual["key"], dated["key"]])
        check([r.valid for r in results] == [True, False], f"many {results}")

    await arecord(v + "validate_licenses", v_many)
    await validator.close()

    async def delete_license() -> Any:
        for one in (lic_id, perpetual["id"]):
            body = await lc.delete_license(one)
            check(body["status"] == "REVOKED", f"delete {body}")

    await arecord(p + "delete_license", delete_license)

    async def delete_app() -> Any:
        body = await lc.delete_application(app_id)
        check(body["deleted"] is True, f"delete app {body}")
        try:
            await lc.get_application(app_id)
        except AsyncNotFoundError:
            return
        raise AssertionError("the app is still there")

    await arecord(p + "delete_application", delete_app)

    # Not provided: LicenseChain's user accounts. The answer must be a clean JSON 404.
    for name, call in (
        ("register_user", lambda: lc.register_user("u@example.com", "pw-123456")),
        ("login", lambda: lc.login("u@example.com", "pw-123456")),
        ("get_user_profile", lc.get_user_profile),
    ):

        async def absent(call: Any = call) -> Any:
            try:
                await call()
            except AsyncNotFoundError as error:
                check(str(error) == "not_found", f"error {error}")
                return
            raise AssertionError("answered")

        await arecord(p + name + " (not provided: 404)", absent)
    await lc.close()


def sync_client() -> None:
    """``Client`` (requests, sync): licenses service, health, and the JWT helper."""
    c = Client(API_KEY, base_url=BASE)
    p = "Client."
    record(p + "ping", lambda: checked(c.ping(), lambda b: b["status"] == "ok", "ping"))
    record(p + "health", lambda: checked(c.health(), lambda b: b["status"] == "ok", "health"))
    app = c.api_client.post("/apps", {"name": "SDK sync app"})
    app_id = app["id"]
    s = "Client.licenses."

    def create() -> Any:
        lic = c.licenses.create(app_id, "sync@example.com", {"order": "S-1"})
        check(lic.app_id == app_id and lic.status == "active", f"create {lic}")
        check(lic.user_email == "sync@example.com" and lic.metadata == {"order": "S-1"}, "create")
        return lic

    lic = record(s + "create", create)
    if lic is None:
        return

    def get() -> Any:
        got = c.licenses.get(lic.key)
        check(got.id == lic.id and got.expires_at is None, f"get {got}")

    record(s + "get", get)

    def update() -> Any:
        updated = c.licenses.update(lic.id, {"plan": "PRO", "metadata": {"order": "S-2"}})
        check(updated.metadata == {"order": "S-2"}, f"update {updated}")
        check(c.api_client.get(f"/licenses/{lic.id}")["plan"] == "PRO", "plan")

    record(s + "update", update)

    def validate() -> Any:
        check(c.licenses.validate(lic.key, "sync-device-1") is True, "validate")
        check(c.licenses.validate(lic.key, "sync-device-2") is False, "second device")
        other = c.licenses.create(app_id, "default-hwuid@example.com")
        check(c.licenses.validate(other.key) is True, "default hwuid")

    record(s + "validate", validate)

    def details() -> Any:
        body = c.licenses.verify_with_details(lic.key, "sync-device-1")
        check(body["valid"] and body["license"]["id"] == lic.id, f"details {body}")
        check(body["license_jwks_uri"] == BASE + "/licenses/jwks", f"jwks uri {body}")
        return body

    verified = record(s + "verify_with_details", details)

    def assertion() -> Any:
        claims = verify_license_assertion_jwt(
            verified["license_token"],
            verified["license_jwks_uri"],
            expected_app_id=app_id,
            issuer=ISSUER,
        )
        check(claims["sub"] == lic.id and claims["hw_bound"] is True, f"claims {claims}")
        try:
            verify_license_assertion_jwt(
                verified["license_token"], verified["license_jwks_uri"], expected_app_id="app_x"
            )
        except ValueError:
            return
        raise AssertionError("another app's id was accepted")

    if verified is not None:
        record("verify_license_assertion_jwt", assertion)

    def user_licenses() -> Any:
        found = c.licenses.list_user_licenses("sync@example.com")
        check([x.id for x in found["data"]] == [lic.id], f"user licenses {found}")

    record(s + "list_user_licenses", user_licenses)

    def stats() -> Any:
        counts = c.licenses.stats()
        check(counts.total >= 2 and counts.active >= 2, f"stats {counts}")

    record(s + "stats", stats)

    def revoke() -> Any:
        check(c.licenses.revoke(lic.id) is True, "revoke")
        check(c.licenses.get(lic.id).status == "revoked", "revoked")
        body = c.licenses.verify_with_details(lic.key, "sync-device-1")
        check(body == {"valid": False, "reason": "license_revoked", "status": "REVOKED"}, "refused")

    record(s + "revoke", revoke)

    def missing() -> Any:
        try:
            c.licenses.get("lic_missing")
        except (NotFoundError, UnknownError) as error:
            # The sync client re-wraps its own NotFoundError as UnknownError (in every
            # version up to 1.1.6): the message still carries the status and our error code.
            check("Not Found: not_found" in str(error), f"error {error}")
            return
        raise AssertionError("answered")

    # The sync client retries every error three times (1 s, 2 s, 4 s): one such call only.
    record(s + "get (missing license: 404)", missing)
    c.close()


def main() -> None:
    asyncio.run(async_client())
    sync_client()
    print(json.dumps(RESULTS))


if __name__ == "__main__":
    main()
