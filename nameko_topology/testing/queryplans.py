"""Which statements a service runs, and which of them read a whole table: for a test that
fails when a query the service runs on every message or request needs an index it lacks.

Example::

    with recorded_statements(handle.engine) as statements:
        ...  # drive the service
    assert {s.sql: table_scans(handle.engine, s) for s in distinct(statements)
            if table_scans(handle.engine, s)} == {}

A scan is what the database's planner chooses when it has no index for a statement: on SQLite,
a ``SCAN`` of a table in ``EXPLAIN QUERY PLAN`` (an ordered walk of a whole index included);
on PostgreSQL, a ``Seq Scan`` in ``EXPLAIN`` with sequential scans disabled, so that it is only
chosen where nothing else can run the statement, however small the test's tables are.
"""
import re
from collections import namedtuple
from contextlib import contextmanager

from sqlalchemy import event

#: one statement as the driver received it: its SQL and (the first set of) its parameters
Statement = namedtuple("Statement", "sql parameters")

# statements that read nothing: inserts (their conflict checks use the unique indexes), the
# transaction's own commands, locks, settings
_READS_NOTHING = re.compile(r"^\s*(INSERT|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|PRAGMA|"
                            r"SELECT pg_advisory|SELECT 1\s*$)", re.IGNORECASE)
_SQLITE_SCAN = re.compile(r"^SCAN (\w+)")


@contextmanager
def recorded_statements(engine):
    """A list that collects, as :class:`Statement`, every statement ``engine`` runs inside the
    ``with`` block."""
    statements = []

    def record(connection, cursor, statement, parameters, context, executemany):
        if executemany and isinstance(parameters, (list, tuple)):
            # a batch (psycopg2's insertmanyvalues hands one statement its merged dict instead)
            parameters = parameters[0] if parameters else ()
        statements.append(Statement(statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def distinct(statements):
    """``statements`` without repeats of one SQL text (the first of each kept)."""
    return list({statement.sql: statement for statement in statements}.values())


def reads(statement):
    """False for a statement that reads no table (see ``_READS_NOTHING``)."""
    return not _READS_NOTHING.match(statement.sql)


def table_scans(engine, statement):
    """The tables that the plan of ``statement`` (a :class:`Statement` run on ``engine``)
    reads from end to end, as a sorted list; empty when every table is reached by an index."""
    if not reads(statement):
        return []
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement.sql,
                                              statement.parameters).all()
            found = (_SQLITE_SCAN.match(row[-1]) for row in plan)
            return sorted({match[1] for match in found if match})
        with connection.begin():
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            (plan,), = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement.sql,
                                                  statement.parameters).all()
        return sorted(set(_pg_seq_scans(plan[0]["Plan"])))


def _pg_seq_scans(node):
    if node.get("Node Type") == "Seq Scan":
        yield node["Relation Name"]
    for child in node.get("Plans", ()):
        yield from _pg_seq_scans(child)
