"""Who acts in a console request, as the service layer records it (``store.Actor``).

- ``request_actor(user)``: a console user (``kind="console"``, ``id``: the user id,
  ``name``: the role; never the email or the display name, which are personal data), or,
  for ``None``, a visitor not signed in (``id`` ``services.users.ANONYMOUS_ID``). The
  client's IP and user agent ride along: the audit log keeps them outside its hash chain.
"""

from __future__ import annotations

from typing import Final

from flask import request

from ..client_ip import client_ip
from ..services.users import ANONYMOUS_ID
from ..store import Actor
from .repository import ConsoleUser

#: the longest user agent kept with an action (the rest is noise)
USER_AGENT_MAX: Final = 256


def request_actor(user: ConsoleUser | None) -> Actor:
    """The ``Actor`` of this request: ``user``, or an anonymous visitor for None."""
    agent = request.user_agent.string or None
    return Actor(
        kind="console",
        id=ANONYMOUS_ID if user is None else user.id,
        name=None if user is None else user.role,
        ip=client_ip(),
        user_agent=agent[:USER_AGENT_MAX] if agent else None,
    )
