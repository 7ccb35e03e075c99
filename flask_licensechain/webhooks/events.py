"""The webhook event types, and the change action each one comes from.

The names are the shared vocabulary of the project (``VOCABULARY.md``): a change recorded
with ``action`` (``store/changes.py``) becomes an event of ``EVENT_TYPES[action]``; other
actions send nothing. ``webhook.test`` is sent only by ``POST /v1/webhooks/<id>/test``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

#: change action -> webhook event type
EVENT_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "license.create": "license.created",
        "license.update": "license.updated",
        "license.revoke": "license.revoked",
        "license.suspend": "license.suspended",
        "license.activate": "license.activated",
        "license.extend": "license.extended",
        "license.expire": "license.expired",
        "device.bind": "device.bound",
        "device.release": "device.released",
        "token.revoke": "token.revoked",
        "api_key.create": "api_key.created",
        "api_key.revoke": "api_key.revoked",
        "api_key.rotate": "api_key.rotated",
        "signing_key.rotate": "signing_key.rotated",
        "security.anomaly": "security.anomaly",
        "security.auth_failures": "security.auth_failures",
        "webhook.disable": "webhook.endpoint_disabled",
    }
)
#: every event type an endpoint may subscribe to, in the vocabulary's order
SUBSCRIBABLE: Final = tuple(EVENT_TYPES.values())
#: the event ``POST /v1/webhooks/<id>/test`` sends
TEST_EVENT: Final = "webhook.test"
#: the event the app's other endpoints get when one of them is disabled automatically
ENDPOINT_DISABLED: Final = EVENT_TYPES["webhook.disable"]
