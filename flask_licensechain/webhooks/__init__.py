"""Webhooks (issue 12): signed, durable, retried events for every change a seller cares
about, in the Standard Webhooks format (https://www.standardwebhooks.com/).

For receivers: ``verify(payload, headers, secret)`` checks a delivery's signature and its
timestamp (5 minutes of tolerance, so an old message cannot be replayed) with the
``standardwebhooks`` library, and returns the event. Deduplicate on the ``webhook-id``
header: delivery is at least once, and the order of events is not guaranteed.

For the server: ``events`` (the event types), ``outbox`` (the change listener that queues
events in the change's transaction), ``delivery`` (signing and sending), ``ssrf`` (which
destinations are allowed), ``worker`` (the delivery worker), ``runtime`` (what they share).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)

from .events import EVENT_TYPES, SUBSCRIBABLE, TEST_EVENT


class InvalidWebhook(Exception):
    """A delivery that must not be trusted: a missing header, a bad or unknown signature,
    a timestamp more than 5 minutes away, a body that is not JSON, or an unusable secret."""


def verify(payload: bytes | str, headers: Mapping[str, str], secret: str | bytes) -> Any:
    """The event of a webhook delivery (``{"type", "timestamp", "data"}``), once its
    Standard Webhooks signature and timestamp hold.

    ``payload`` is the request body exactly as received (bytes or text); ``headers`` the
    request headers (any case; ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``
    are read); ``secret`` the endpoint's ``whsec_...`` secret (or its raw bytes). During a
    secret rotation the delivery carries one signature per secret: either secret verifies.

    Raises ``InvalidWebhook`` when the delivery must be refused (answer it 400).
    """
    try:
        return Webhook(secret).verify(payload, dict(headers.items()))
    except WebhookVerificationError as exc:
        raise InvalidWebhook(str(exc)) from None
    except (ValueError, TypeError, binascii.Error, RuntimeError) as exc:
        # a malformed signature list or secret, a body that is not UTF-8 or not JSON
        raise InvalidWebhook(f"malformed webhook: {type(exc).__name__}") from None
    except EmptyWebhookSecretError:
        raise InvalidWebhook("the webhook secret is empty") from None


__all__ = ["EVENT_TYPES", "SUBSCRIBABLE", "TEST_EVENT", "InvalidWebhook", "verify"]
