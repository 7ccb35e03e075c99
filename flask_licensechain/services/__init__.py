"""The service layer: every state change of the license server, in one place.

The API views, the CLI commands, the console pages and the workers translate their input,
build an ``Actor`` (``api.auth.request_actor()``, ``command.cli_actor()``, the console's
signed-in user, ``store.changes.SYSTEM``) and call a function here; they never write
through a repository themselves, and never call one another.

A service function takes the issuer state (or the store) and the actor first, then
keyword-only arguments, and does its work inside ``store.unit_of_work(actor)``: the change,
its audit event (``UnitOfWork.record``) and, through the store's change listeners, its
webhook outbox event commit together, or not at all. Effects outside the database
(denylist announcements, metrics) go to ``UnitOfWork.after_commit``.

One module per aggregate: ``apps``, ``licenses``, ``api_keys``, ``signing_keys``,
``tokens``, ``webhooks``, ``customers``, ``users``.
"""
