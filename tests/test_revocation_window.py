"""A suspension or revocation outlives every token of the license, the day-long ones included."""

from __future__ import annotations

import time

import pytest
from issuer_support import Issuer

from flask_licensechain.core.denylist import MemoryDenylist
from flask_licensechain.core.verifier import Check, TokenRejected, TokenVerifier

pytest_plugins = ["issuer_fixtures"]

DAY = 86400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("action", ["suspend", "revoke"])
def test_business_tier_token_stays_refused_23_hours_after_suspension(
    sqlite_issuer: Issuer, action: str
) -> None:
    issuer = sqlite_issuer
    lic = issuer.new_license(issuer.new_app(tier="business").id)
    token = issuer.token_for(lic.key)
    response = issuer.client.patch(f"/v1/licenses/{lic.id}/{action}", headers=issuer.auth())
    assert response.status_code == 200
    # The revocation the store recorded, replayed on a denylist and verifier with a fake clock.
    _, live = issuer.store.revocations.snapshot(time.time())
    entries = [e for e in live if e.ident == lic.id]
    assert len(entries) == 1
    # the longest token TTL (custom: a day) plus the leeway
    assert entries[0].until - time.time() >= DAY + 30 - 5

    clock = Clock(time.time())
    denylist = MemoryDenylist(clock=clock)
    denylist.publish(entries)
    verifier = TokenVerifier(
        issuer.state.key_source, issuer=issuer.state.verifier.issuer, denylist=denylist, clock=clock
    )
    for hours in (0, 1, 23, 24):
        clock.now = time.time() + hours * 3600
        with pytest.raises(TokenRejected) as err:
            verifier.verify(token)
        assert err.value.check == Check.REVOKED, hours
