"""The services' list methods, on SQLite and PostgreSQL: one page at a time (default 100, at
most 1,000), cursors that continue where the last page ended, filters, errors naming the
argument; and cursors that never skip or repeat a row while three writers (three instances,
each its own connections) add rows concurrently."""
import eventlet
import pytest
from nameko.testing.services import worker_factory

from nameko_services import inventory, migrations, notifications, orders
from nameko_services.inventory import InventoryService
from nameko_services.notifications import NotificationsService
from nameko_services.orders import OrdersService
from nameko_topology.database import DatabaseHandle
from nameko_topology.exceptions import InvalidMessage
from nameko_topology.testing.fakes import FakeCorrelation, FakeOutbox

SERVICES = {
    "orders": (OrdersService, orders.metadata),
    "inventory": (InventoryService, inventory.metadata),
    "notifications": (NotificationsService, notifications.metadata),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pages.sqlite3"
    return request.getfixturevalue("postgres_db").url


@pytest.fixture
def instance(url, topology):
    """``instance(name)``: a worker of service ``name`` with a database handle of its own, as
    one more instance of the service would have."""
    handles = []

    def instance(name):
        service_class, metadata = SERVICES[name]
        handle = DatabaseHandle(url)
        handle.migrate(metadata, migrations.of(name), f"{name}_alembic_version")
        handle.create(metadata)
        handles.append(handle)
        dependencies = {"db": handle, "correlation": FakeCorrelation("req-1")}
        if name != "notifications":
            dependencies["outbox"] = FakeOutbox(topology)
        return worker_factory(service_class, **dependencies)

    yield instance
    for handle in handles:
        handle.engine.dispose()


def place(service, numbers, item="widget-A", quantity=1):
    return [entry["order"]["order_id"] for entry in service.place_orders([
        {"item": item, "quantity": quantity, "order_id": f"o-{n:05d}"} for n in numbers])]


def test_a_page_is_100_orders_by_default_and_the_cursor_goes_on_from_its_end(instance):
    service = instance("orders")
    placed = place(service, range(250))
    first = service.list_orders()
    assert len(first["items"]) == 100 and first["more"]
    second = service.list_orders(cursor=first["next"], limit=1000)
    assert len(second["items"]) == 150 and not second["more"]
    assert [o["order_id"] for o in first["items"] + second["items"]] == placed
    assert set(first["items"][0]) == {"order_id", "item", "quantity", "status", "reason",
                                      "correlation_id", "created_at"}
    # read to the end: the last next asks for what comes later
    assert service.list_orders(cursor=second["next"])["items"] == []
    later = place(service, [900])
    assert [o["order_id"] for o in service.list_orders(cursor=second["next"])["items"]] == later


def test_orders_filter_by_status_and_item(instance):
    service = instance("orders")
    place(service, range(0, 10), item="widget-A")
    place(service, range(10, 15), item="gadget-X")
    service.on_inventory_failed([{"order_id": f"o-{n:05d}", "reason": "none left"}
                                 for n in (3, 11, 12)])
    rejected = service.list_orders(status="REJECTED")["items"]
    assert [o["order_id"] for o in rejected] == ["o-00003", "o-00011", "o-00012"]
    both = service.list_orders(status="REJECTED", item="gadget-X", limit=1)
    assert [o["order_id"] for o in both["items"]] == ["o-00011"] and both["more"]
    rest = service.list_orders(status="REJECTED", item="gadget-X", cursor=both["next"])
    assert [o["order_id"] for o in rest["items"]] == ["o-00012"] and not rest["more"]
    assert len(service.list_orders(item="widget-A")["items"]) == 10
    assert service.list_orders(item="nothing")["items"] == []


def test_processed_and_notifications_page_the_same_way(instance):
    stock = instance("inventory")
    stock.on_order_placed([{"order_id": f"o-{n:05d}", "item": "unknown", "quantity": 1}
                           for n in range(120)])
    first = stock.list_processed(limit=50)
    rest = stock.list_processed(cursor=first["next"], limit=1000)
    assert first["items"] + rest["items"] == [f"o-{n:05d}" for n in range(120)]
    assert first["more"] and not rest["more"]

    notices = instance("notifications")
    notices.on_inventory_reserved([{"order_id": f"o-{n:05d}", "item": "widget-A",
                                    "quantity": 1, "remaining": 1} for n in range(120)])
    page = notices.list_notifications(after=0)
    assert len(page["items"]) == 100 and page["next"] == page["items"][-1]["id"]


@pytest.mark.parametrize("arguments, named", [
    ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "10"}, "limit"),
    ({"limit": True}, "limit"), ({"cursor": "x"}, "cursor"), ({"cursor": 5}, "cursor"),
    ({"cursor": "-1"}, "cursor"), ({"status": "pending"}, "status"), ({"item": 7}, "item"),
])
def test_a_bad_argument_is_refused_naming_it(instance, arguments, named):
    with pytest.raises(InvalidMessage, match=f"^{named} "):
        instance("orders").list_orders(**arguments)


@pytest.mark.parametrize("arguments, named", [
    ({"after": -1}, "after"), ({"after": "3"}, "after"), ({"limit": 5000}, "limit")])
def test_notifications_refuse_a_bad_argument_naming_it(instance, arguments, named):
    with pytest.raises(InvalidMessage, match=f"^{named} "):
        instance("notifications").list_notifications(**arguments)


WRITERS, ROWS, BATCH = 3, 1000, 4


def write(name, service, writer):
    """Writer ``writer``'s share of the ROWS rows, in batches of BATCH."""
    numbers = list(range(writer, ROWS, WRITERS))
    for start in range(0, len(numbers), BATCH):
        batch = [f"o-{n:05d}" for n in numbers[start:start + BATCH]]
        if name == "orders":
            service.place_orders([{"item": "widget-A", "quantity": 1, "order_id": order_id}
                                  for order_id in batch])
        elif name == "inventory":
            service.on_order_placed([{"order_id": order_id, "item": "unknown", "quantity": 1}
                                     for order_id in batch])
        else:
            service.on_inventory_reserved([{"order_id": order_id, "item": "widget-A",
                                            "quantity": 1, "remaining": 1}
                                           for order_id in batch])
        eventlet.sleep(0)  # let the others interleave their transactions with this one's


def read_ids(name, service, cursor):
    if name == "orders":
        page = service.list_orders(cursor=cursor, limit=7)
        return [o["order_id"] for o in page["items"]], page["next"]
    if name == "inventory":
        page = service.list_processed(cursor=cursor, limit=7)
        return page["items"], page["next"]
    page = service.list_notifications(after=cursor or 0, limit=7)
    return [n["order_id"] for n in page["items"]], page["next"]


@pytest.mark.parametrize("name", ["orders", "inventory", "notifications"])
def test_a_poller_following_the_cursor_sees_every_row_once_while_three_instances_write(
        instance, name):
    writers = [instance(name) for _ in range(WRITERS)]
    reader = instance(name)
    threads = [eventlet.spawn(write, name, service, n) for n, service in enumerate(writers)]
    seen, cursor = [], None
    while True:
        # checked before the read: a read that starts after the last commit sees it
        written = all(thread.dead for thread in threads)
        ids, cursor = read_ids(name, reader, cursor)
        seen += ids
        if written and not ids:
            break
        if not ids:
            eventlet.sleep(0.001)
    for thread in threads:
        thread.wait()  # a writer's error, if there was one
    assert len(seen) == len(set(seen)), "a row was seen twice"
    assert sorted(seen) == [f"o-{n:05d}" for n in range(ROWS)], \
        f"{ROWS - len(set(seen))} rows were skipped"
