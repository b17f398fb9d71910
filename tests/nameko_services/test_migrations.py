"""Schema migrations at start-up: a database made by the schema before migrations (create_all,
main at 649bac0) is upgraded to the head with its rows kept; a new one is made by the
migrations to exactly the tables the services define; a second start changes nothing. On
SQLite and PostgreSQL."""
import pytest
from sqlalchemy import (
    Column, Float, Integer, MetaData, String, Table, Text, UniqueConstraint, inspect, select, text,
)

from nameko_services import inventory, migrations, notifications, orders
from nameko_topology.database import DatabaseHandle
from nameko_topology.migrations import OUTBOX_MIGRATIONS
from nameko_topology.outbox import outbox_table

#: the tables of orders and notifications, and orders' outbox, as 649bac0 created them
OLD = MetaData()
Table("orders_orders", OLD,
      Column("order_id", String(100), primary_key=True),
      Column("item", String(100), nullable=False), Column("quantity", Integer, nullable=False),
      Column("status", String(20), nullable=False), Column("reason", String(500)),
      Column("idempotency_key", String(200), unique=True),
      Column("created_at", Float, nullable=False), Column("updated_at", Float, nullable=False))
Table("notifications_notifications", OLD,
      Column("id", Integer, primary_key=True, autoincrement=True),
      Column("order_id", String(100), nullable=False), Column("kind", String(20), nullable=False),
      Column("item", String(100), nullable=False), Column("quantity", Integer, nullable=False),
      Column("message", String(1000), nullable=False), Column("created_at", Float, nullable=False),
      UniqueConstraint("order_id", "kind", name="notifications_one_per_order_and_kind"))
Table("inventory_processed", OLD,
      Column("order_id", String(100), primary_key=True),
      Column("outcome", String(20), nullable=False), Column("reason", String(500)),
      Column("processed_at", Float, nullable=False))
Table("orders_outbox", OLD,
      Column("id", Integer, primary_key=True, autoincrement=True),
      Column("message_id", String(64), nullable=False, unique=True),
      Column("message_type", String(200), nullable=False),
      Column("exchange", String(255), nullable=False),
      Column("routing_key", String(255), nullable=False),
      Column("correlation_id", String(200), nullable=False), Column("body", Text, nullable=False),
      Column("created_at", Float, nullable=False), Column("claimed_by", String(64)),
      Column("claimed_at", Float), Column("attempts", Integer, nullable=False, default=0))

OLD_ROWS = {
    "orders_orders": {"order_id": "o-1", "item": "widget-A", "quantity": 2, "status": "PENDING",
                      "reason": None, "idempotency_key": "k-1", "created_at": 1.0,
                      "updated_at": 1.0},
    "inventory_processed": {"order_id": "o-1", "outcome": "reserved", "reason": None,
                            "processed_at": 2.0},
    "notifications_notifications": {"id": 1, "order_id": "o-0", "kind": "confirmation",
                                    "item": "widget-A", "quantity": 1, "message": "done",
                                    "created_at": 1.0},
    "orders_outbox": {"id": 1, "message_id": "m-1", "message_type": "OrderPlaced",
                      "exchange": "orders", "routing_key": "order.placed",
                      "correlation_id": "c-1", "body": "{}", "created_at": 1.0,
                      "claimed_by": None, "claimed_at": None, "attempts": 1},
}

OUTBOX = outbox_table(MetaData(), "orders")


def start(url):
    """What the orders and notifications services do to their database at start-up."""
    handle = DatabaseHandle(url)
    handle.migrate(orders.metadata, migrations.of("orders"), "orders_alembic_version")
    handle.migrate(notifications.metadata, migrations.of("notifications"),
                   "notifications_alembic_version")
    handle.migrate(inventory.metadata, migrations.of("inventory"), "inventory_alembic_version")
    handle.migrate(OUTBOX.metadata, OUTBOX_MIGRATIONS, "orders_outbox_alembic_version",
                   table=OUTBOX.name)
    for metadata in (orders.metadata, notifications.metadata, inventory.metadata,
                     OUTBOX.metadata):
        handle.create(metadata)
    return handle


def columns(handle, table):
    return {column["name"] for column in inspect(handle.engine).get_columns(table)}


def versions(handle):
    with handle.transaction() as connection:
        return {table: connection.execute(text(f"SELECT version_num FROM {table}")).scalar()
                for table in ("orders_alembic_version", "notifications_alembic_version",
                              "inventory_alembic_version", "orders_outbox_alembic_version")}


TABLES = (orders.orders, notifications.notifications, inventory.processed, inventory.stock,
          OUTBOX)


def check_schema(handle):
    """Every table has the columns and the indexes its service defines."""
    inspector = inspect(handle.engine)
    for table in TABLES:
        assert columns(handle, table.name) == set(table.columns.keys())
        indexes = {index["name"]: (index["column_names"], bool(index["unique"]))
                   for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            assert indexes.get(index.name) == ([c.name for c in index.columns],
                                               bool(index.unique)), (table.name, index.name)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/upgrade.sqlite3"
    return request.getfixturevalue("postgres_db").url


def test_a_database_of_the_previous_schema_is_upgraded_with_its_rows_kept(url):
    old = DatabaseHandle(url)
    with old.transaction() as connection:
        OLD.create_all(connection)
        for table, row in OLD_ROWS.items():
            connection.execute(OLD.tables[table].insert(), row)
        # an order and an inbox row older than the first: positions follow the times
        connection.execute(OLD.tables["orders_orders"].insert(), {
            **OLD_ROWS["orders_orders"], "order_id": "o-0", "idempotency_key": None,
            "created_at": 0.5})
        connection.execute(OLD.tables["inventory_processed"].insert(), {
            **OLD_ROWS["inventory_processed"], "order_id": "o-0", "processed_at": 1.5})
    old.engine.dispose()

    handle = start(url)
    assert versions(handle) == {"orders_alembic_version": "0003",
                                "notifications_alembic_version": "0002",
                                "inventory_alembic_version": "0002",
                                "orders_outbox_alembic_version": "0003"}
    check_schema(handle)
    with handle.transaction() as connection:
        for table, row in OLD_ROWS.items():
            kept = connection.execute(select(OLD.tables[table]).where(
                OLD.tables[table].c[next(iter(row))] == next(iter(row.values())))
            ).mappings().one()
            assert dict(kept) == row
        assert connection.execute(select(orders.orders.c.correlation_id)).scalar() is None
        for table in (orders.orders, inventory.processed):
            assert connection.execute(select(table.c.order_id, table.c.position).order_by(
                table.c.position)).all() == [("o-0", 1), ("o-1", 2)]
        # the new columns take writes
        connection.execute(orders.orders.insert(), {**OLD_ROWS["orders_orders"],
                                                    "order_id": "o-2", "idempotency_key": None,
                                                    "correlation_id": "req-2", "position": 3})
    handle.engine.dispose()
    again = start(url)  # a restart: nothing to do, nothing changed
    assert versions(again)["orders_alembic_version"] == "0003"
    with again.transaction() as connection:
        assert connection.execute(select(orders.orders.c.order_id).order_by(
            orders.orders.c.order_id)).scalars().all() == ["o-0", "o-1", "o-2"]
    again.engine.dispose()


def test_a_new_database_gets_the_tables_the_services_define(url):
    handle = start(url)
    check_schema(handle)
    handle.engine.dispose()
