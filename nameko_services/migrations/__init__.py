"""The pipeline services' schema migrations, one Alembic script directory per service
(see :mod:`nameko_topology.migrations`)."""
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def of(service):
    """The script directory of ``service``'s migrations."""
    return str(_HERE / service)


def number_rows(table, key, order_by):
    """Set the ``position`` column of every row of ``table`` (primary key ``key``) to 1, 2, ...
    in the order of ``order_by`` (SQL): the positions of rows stored before positions existed.
    For use inside a migration."""
    from alembic import op
    from sqlalchemy import text

    # UPDATE ... FROM: PostgreSQL, and SQLite from 3.33
    op.get_bind().execute(text(
        f"UPDATE {table} SET position = numbered.n FROM "
        f"(SELECT {key} AS numbered_key, ROW_NUMBER() OVER (ORDER BY {order_by}) AS n "
        f"FROM {table}) AS numbered WHERE {table}.{key} = numbered.numbered_key"))
