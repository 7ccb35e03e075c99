"""Alembic's environment for the store's migrations: run only on a connection handed over.

``flask_licensechain.store.migrate`` opens the transaction (and takes the migration lock) and
passes its connection in ``config.attributes["connection"]``; everything the migrations do
commits or rolls back with it. There is no offline (``--sql``) mode and no ``alembic.ini``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from flask_licensechain.store.migrate import VERSION_TABLE, owns_table
from flask_licensechain.store.schema import metadata


def _include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    # Autogenerate compares our tables only: the host app may keep its own in the same database.
    if type_ == "table":
        return name is not None and owns_table(name)
    return True


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("LicenseChain migrations run online only (no --sql mode)")
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, sa.Connection):
        raise RuntimeError(
            "run LicenseChain migrations through `flask licensechain db ...` or "
            "flask_licensechain.store.migrate, which pass a connection"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        # SQLite alters tables by copying them; batch mode does that in every revision.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
