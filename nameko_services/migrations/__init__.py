"""The pipeline services' schema migrations, one Alembic script directory per service
(see :mod:`nameko_topology.migrations`)."""
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def of(service):
    """The script directory of ``service``'s migrations."""
    return str(_HERE / service)


def add_position(table, key, order_by):
    """Give ``table`` (primary key ``key``) its ``position`` column in commit order
    (nameko_topology.positions), with its unique index ``<table>_position``: the rows already
    there are numbered 1, 2, ... in the order of ``order_by`` (SQL). For use in a migration."""
    from alembic import op
    from sqlalchemy import BigInteger, Column, text

    with op.batch_alter_table(table) as batch:
        batch.add_column(Column("position", BigInteger))
    # UPDATE ... FROM: PostgreSQL, and SQLite from 3.33
    op.get_bind().execute(text(
        f"UPDATE {table} SET position = numbered.n FROM "
        f"(SELECT {key} AS numbered_key, ROW_NUMBER() OVER (ORDER BY {order_by}) AS n "
        f"FROM {table}) AS numbered WHERE {table}.{key} = numbered.numbered_key"))
    with op.batch_alter_table(table) as batch:
        batch.alter_column("position", existing_type=BigInteger, nullable=False)
    op.create_index(f"{table}_position", table, ["position"], unique=True)
