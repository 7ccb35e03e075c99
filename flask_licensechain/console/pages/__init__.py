"""The console's business pages, one module per page; importing this package adds their
routes to the console blueprint and their links (each module's ``NAV``) to the navigation
bar, in ``PAGES`` order.

Every view is guarded by ``@requires_scope`` (and ``@requires_recent_mfa`` for the
sensitive actions); every change goes through the service layer, as the API's do, with
the signed-in user as the ``Actor`` (``common.console_actor``).
"""

from __future__ import annotations

from typing import Final

from ..blueprint import add_nav
from . import (
    api_keys,
    apps,
    assets,
    audit_log,
    customers,
    licenses,
    overview,
    signing_keys,
    users,
    webhooks,
)

#: the page modules, in navigation order
PAGES: Final = (
    overview,
    apps,
    licenses,
    customers,
    api_keys,
    webhooks,
    signing_keys,
    audit_log,
    users,
)
#: imported for its route only (the pages' stylesheet)
ASSETS: Final = assets

for _page in PAGES:
    add_nav(*_page.NAV)
