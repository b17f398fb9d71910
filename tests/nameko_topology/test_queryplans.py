"""nameko_topology.testing.queryplans on SQLite and PostgreSQL: a statement served by an index
has no scan, one that filters on a column without an index has, whatever the table's size."""
import pytest
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, insert, select

from nameko_topology.database import DatabaseHandle
from nameko_topology.testing.queryplans import distinct, recorded_statements, table_scans

metadata = MetaData()
things = Table("qp_things", metadata, Column("id", Integer, primary_key=True),
               Column("keyed", String(20)), Column("plain", String(20)),
               Index("qp_things_keyed", "keyed"))


@pytest.fixture(params=["sqlite", "postgresql"])
def handle(request, tmp_path):
    url = (f"sqlite:///{tmp_path}/qp.sqlite3" if request.param == "sqlite"
           else request.getfixturevalue("postgres_db").url)
    handle = DatabaseHandle(url)
    handle.create(metadata)
    yield handle
    handle.engine.dispose()


def test_an_indexed_lookup_has_no_scan_and_a_lookup_on_a_plain_column_has_one(handle):
    with recorded_statements(handle.engine) as statements:
        with handle.transaction() as connection:
            connection.execute(insert(things), [{"keyed": "a", "plain": "b"}] * 3)
            connection.execute(select(things).where(things.c.keyed == "a")).all()
            connection.execute(select(things).where(things.c.plain == "b")).all()
            connection.execute(select(things).where(things.c.id > 1).order_by(things.c.id)
                               .limit(2)).all()
    planned = {statement.sql: table_scans(handle.engine, statement)
               for statement in distinct(statements)}
    by_column = {column: scans for sql, scans in planned.items()
                 for column in ("keyed =", "plain =", "id >") if f"qp_things.{column}" in sql}
    assert by_column == {"keyed =": [], "plain =": ["qp_things"], "id >": []}
    assert all(scans == [] for sql, scans in planned.items() if sql.startswith("INSERT"))
