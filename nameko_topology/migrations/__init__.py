"""Schema migrations with Alembic: each service's tables, and the framework's outbox table.

A :class:`~nameko_topology.database.Database` given ``migrations=`` (an Alembic script
directory) brings its tables to the directory's head at start-up, under the same lock as
table creation, recording where each database stands in a version table of the service's own
(``<service>_alembic_version``). The outbox table is the framework's: its migrations live here
(``outbox/``), with a version table per service (``<service>_outbox_alembic_version``).

A migration directory's ``env.py`` is two lines, :func:`run_env` doing the work; its first
revision creates the tables as they were before migrations existed, only where they are missing,
so that a database made by ``create_all`` joins the chain where it stands.
"""
from pathlib import Path

from alembic import command
from alembic.config import Config

#: the framework's own migrations, of the outbox table
OUTBOX_MIGRATIONS = str(Path(__file__).resolve().parent / "outbox")


def upgrade(connection, script_location, version_table, **attributes):
    """Bring the database of ``connection`` (in a transaction) to the head of the migrations
    in ``script_location``, recording it in ``version_table``; ``attributes`` reach the
    migrations as ``context.config.attributes`` (the outbox's take ``table``)."""
    config = Config()
    config.set_main_option("script_location", script_location)
    config.attributes.update(attributes, connection=connection, version_table=version_table)
    command.upgrade(config, "head")


def run_env(context):
    """The body of a migration directory's ``env.py``: run the migrations on the connection
    :func:`upgrade` passed, in its transaction."""
    attributes = context.config.attributes
    # batch mode: SQLite alters a table by copying it, which Alembic does for us
    context.configure(connection=attributes["connection"],
                      version_table=attributes["version_table"], render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
