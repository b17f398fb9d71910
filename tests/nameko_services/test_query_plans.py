"""Every statement the three services run, recorded while an order workload goes through them
(in one nameko runner, on the real broker), is planned with ``EXPLAIN QUERY PLAN`` on SQLite
and ``EXPLAIN`` on PostgreSQL: none may read a whole table, except the few listed below with
the reason each is bounded."""
from pathlib import Path

import pytest
from nameko.testing.services import entrypoint_hook, entrypoint_waiter
from nameko.testing.utils import get_container
from prometheus_client import REGISTRY, generate_latest

from nameko_services.inventory import InventoryService
from nameko_services.notifications import NotificationsService
from nameko_services.orders import OrdersService
from nameko_topology.database import Database
from nameko_topology.testing.queryplans import distinct, reads, recorded_statements, table_scans

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"
SERVICES = (OrdersService, InventoryService, NotificationsService)

#: scans that do a bounded amount of work, each with why
BOUNDED = {
    # SQLite's position lock (nameko_topology/positions.py): a delete that matches nothing,
    # for the write lock it takes; SQLite tests the constant before reading any row
    "WHERE 0 = 1": "reads no row",
    # the outbox gauges (nameko_topology/metrics.py): at most MAX_COUNTED_OUTBOX_ROWS rows
    # counted, and the oldest row found in id order (SQLite walks the rowid from its start)
    "LIMIT ?) AS anon_1": "count capped by LIMIT",
    "FROM orders_outbox ORDER BY orders_outbox.id": "first row in id order, LIMIT 1",
    "FROM inventory_outbox ORDER BY inventory_outbox.id": "first row in id order, LIMIT 1",
    # GET /inventory: every stock item, which is the answer (one row per item sold)
    "FROM inventory_stock ORDER BY inventory_stock.item": "the whole catalogue is the reply",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_config(request, tmp_path):
    if request.param == "sqlite":
        return {"DATA_DIR": str(tmp_path)}
    return {"DATABASE_URL": request.getfixturevalue("postgres_db").url}


@pytest.fixture
def runner(vhost, runner_factory, database_config, monkeypatch, tmp_path):
    monkeypatch.setenv("INITIAL_STOCK", '{"widget-A": 5, "gadget-X": 100}')
    config = {"AMQP_URI": vhost.amqp_uri, "TOPOLOGY_FILE": str(REPO_TOPOLOGY),
              "DATA_DIR": str(tmp_path), "max_workers": 4, "OUTBOX_POLL_SECONDS": 0.05,
              **database_config}
    runner = runner_factory(config, *SERVICES)
    runner.start()
    return runner


def engines(runner):
    """The database engine of each service, by service name."""
    found = {}
    for service_class in SERVICES:
        container = get_container(runner, service_class)
        for dependency in container.dependencies:
            if isinstance(dependency, Database):
                found[container.service_name] = dependency.handle.engine
    return found


def workload(runner):
    """Orders that take every path the services have: placed alone and in a batch, repeated,
    conflicting, beyond stock, of an unknown item; then every read, with filters and cursors."""
    orders, inventory, notifications = (get_container(runner, cls) for cls in SERVICES)
    with entrypoint_waiter(notifications, "on_inventory_failed", timeout=20), \
            entrypoint_hook(orders, "place_order") as place_order:
        order = place_order(item="widget-A", quantity=6)  # beyond stock: REJECTED
    with entrypoint_waiter(notifications, "on_inventory_reserved", timeout=20), \
            entrypoint_hook(orders, "place_orders") as place_orders:
        placed = place_orders([{"item": "gadget-X", "quantity": 1, "idempotency_key": f"k-{n}"}
                               for n in range(3)])
    with entrypoint_hook(orders, "place_orders") as place_orders:
        # a repeat (by key) and a conflict beside a new order: the batch's one-by-one path
        place_orders([{"item": "gadget-X", "quantity": 1, "idempotency_key": "k-0"},
                      {"item": "gadget-X", "quantity": 2, "idempotency_key": "k-1"},
                      {"item": "gizmo-Q", "quantity": 1}])
    with entrypoint_hook(orders, "list_orders") as list_orders:
        first = list_orders(limit=2)
        list_orders(cursor=first["next"], limit=2)
        list_orders(status="CONFIRMED", limit=10)
        list_orders(item="gadget-X", cursor=first["next"])
        list_orders(status="REJECTED", item="widget-A")
    with entrypoint_hook(orders, "get_order") as get_order:
        get_order(order["order_id"])
        get_order(placed[0]["order"]["order_id"])
    with entrypoint_hook(inventory, "list_processed") as list_processed:
        list_processed(cursor=list_processed(limit=1)["next"])
    with entrypoint_hook(inventory, "get_inventory") as get_inventory:
        get_inventory()
    with entrypoint_hook(notifications, "list_notifications") as list_notifications:
        list_notifications(after=list_notifications(limit=1)["next"])
    for container in (orders, inventory, notifications):
        with entrypoint_hook(container, "health") as health:
            health()
    generate_latest(REGISTRY)  # a scrape: the outbox gauges read their tables


def test_no_statement_the_services_run_scans_a_table(runner, wait_for):
    recorders = {name: recorded_statements(engine) for name, engine in engines(runner).items()}
    recorded = {name: recorder.__enter__() for name, recorder in recorders.items()}
    try:
        workload(runner)
        # the relays' sweeps for lapsed claims run every OUTBOX_POLL_SECONDS
        wait_for(lambda: all(any("claimed_at IS NULL" in s.sql for s in statements)
                             for name, statements in recorded.items() if name != "notifications"),
                 timeout=10, description="an outbox sweep in orders and inventory")
    finally:
        for recorder in recorders.values():
            recorder.__exit__(None, None, None)

    engine_of = engines(runner)
    planned, scans = 0, {}
    for name, statements in recorded.items():
        for statement in distinct(statements):
            if not reads(statement):
                continue
            planned += 1
            scanned = table_scans(engine_of[name], statement)
            if scanned and not any(pattern in statement.sql for pattern in BOUNDED):
                scans[f"{name}: {statement.sql}"] = scanned
    assert scans == {}
    # the workload reached the statements that matter: the reads of every list, the settle
    # of an order, the stock update, the inbox check, the relay's reads and deletes
    everything = " ".join(s.sql for statements in recorded.values() for s in statements)
    for needed in ("orders_orders.position >", "inventory_processed.position >",
                   "notifications_notifications.id >", "UPDATE orders_orders",
                   "UPDATE inventory_stock", "inventory_processed.order_id IN",
                   "orders_outbox.claimed_by =", "DELETE FROM inventory_outbox"):
        assert needed in everything
    assert planned >= 20
