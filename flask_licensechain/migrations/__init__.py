"""The store's schema migrations: an Alembic script directory shipped inside the package.

Nothing here is imported at run time. ``flask_licensechain/store/migrate.py`` points Alembic at
this folder, hands ``env.py`` an open connection (inside one locked transaction) and keeps the
version in the table ``lc_schema_version``. Operators run the revisions with
``flask --app APP licensechain db upgrade`` (``db current``, ``db downgrade REV``); a server
refuses to start on a store older or newer than its code, and creates an empty one.

Files: ``env.py`` (Alembic's environment, online mode only), ``script.py.mako`` (the template
of a new revision), ``versions/rNNNN_<what>.py`` (one revision each, ids ``0001``, ``0002``...).

Adding a revision (for a new table, column or index):

1. Change the tables in ``flask_licensechain/store/schema.py`` as the code needs them.
2. Write the revision. Alembic can draft it against a database at the current head::

       from alembic import command
       from flask_licensechain.store import open_store
       from flask_licensechain.store.migrate import alembic_config

       store = open_store("sqlite:///draft.db")
       store.upgrade_schema()  # the previous head
       with store.engine.begin() as conn:
           command.revision(alembic_config(conn), "add api key expiry", autogenerate=True,
                            rev_id="0002")

   This writes ``versions/r0002_add_api_key_expiry.py`` (an empty draft when ``schema.py``
   already matches the migrations). Read and finish it by hand, then ``ruff format`` it:
   autogenerate misses renames, data moves and server defaults.
3. Rules for a revision:

   - ``down_revision`` is the previous head: the history stays one line (a test checks that
     there is exactly one head).
   - Spell types out (``sa.DateTime(timezone=True).with_variant(sa.String(26), "sqlite")``
     for a ``UTCDateTime``), never import them from ``store/schema.py``: a revision must stay
     what it was when the schema module moves on.
   - Alter existing tables inside ``with op.batch_alter_table("lc_x") as batch:`` so SQLite,
     which cannot alter most of a table in place, rebuilds it. Foreign keys are off while
     migrations run on SQLite (a rebuild must not cascade deletes), and
     ``PRAGMA foreign_key_check`` must pass before the transaction commits.
   - A new ``NOT NULL`` column on a table with rows needs a ``server_default`` (or a data
     step filling it before the constraint is set).
   - Write ``downgrade()`` too: it is tested.
   - Every table name starts with ``lc_``; other tables in the database belong to the host
     app and are never touched or compared.
4. Run ``tests/test_migrations.py``. Without any change there, it upgrades a store filled
   at revision 0001 to the new head on SQLite and PostgreSQL, checks the data through the
   repositories, checks that the migrated schema equals ``store/schema.py`` (Alembic's
   ``compare_metadata``), and downgrades to 0001 and back.
"""
