"""Positions in commit order: the keys of cursors that never skip a row.

A reader that pages by an increasing key and passes the last key it saw misses a row whenever a
row with a smaller key commits after one with a larger key: on PostgreSQL, ids from a sequence
are drawn when a transaction inserts, not when it commits, and concurrent transactions commit
in any order. So every transaction that adds rows to a table read by a cursor first takes that
table's position lock (:func:`lock_positions`), held until it commits or rolls back: the keys
it then draws, from a sequence or from :func:`next_positions`, are above every key committed
before, and nobody draws another until it has committed. Key order is then commit order.

The lock serialises the writers of one table from their insert to their commit only, so it is
taken as the last step of a transaction, right before its insert.
"""
from functools import cache
from zlib import crc32

from sqlalchemy import false, func, select, text

# PostgreSQL's two-key advisory locks: this namespace, and a key made from the table's name
_LOCK_NAMESPACE = 0x6E6B7470  # "nktp"
_PG_LOCK = text("SELECT pg_advisory_xact_lock(:namespace, :key)")


def lock_positions(connection, table):
    """Hold ``table``'s position lock until the transaction of ``connection`` ends.

    Several instances of a service sharing one database take the same lock: on PostgreSQL an
    advisory lock named by the table, on SQLite the database's write lock, which a write takes
    (a delete of nothing is a write) and keeps until commit.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(_PG_LOCK, {"namespace": _LOCK_NAMESPACE, "key": _table_key(table)})
    else:
        connection.execute(_sqlite_lock(table))


def next_positions(connection, column, count):
    """Take the position lock of ``column``'s table and return the ``count`` positions after
    the highest one stored, as a ``range``. The rows that get them must be inserted in the same
    transaction; the column needs an index (a unique one: two rows never share a position)."""
    lock_positions(connection, column.table)
    highest = connection.execute(_highest(column)).scalar()
    return range(highest + 1, highest + 1 + count)


# Each statement is built once per table or column, not per transaction: building one and
# computing its cache key cost more than running it (about 35 us each here, on every batch
# that a handler or place_orders writes); a statement object keeps its cache key, so
# SQLAlchemy's compiled cache answers at once.
@cache
def _sqlite_lock(table):
    return table.delete().where(false())


@cache
def _highest(column):
    return select(func.coalesce(func.max(column), 0))


def _table_key(table):
    # a signed 32-bit integer, as pg_advisory_xact_lock(int, int) takes
    key = crc32(table.name.encode())
    return key - (1 << 32) if key >= 1 << 31 else key
