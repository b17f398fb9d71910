"""The services' business rules, with nameko's worker_factory, a real SQLite database and the
plugin's FakeOutbox (payloads checked against topology.yaml)."""
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select, text

from nameko_services import inventory, notifications, orders
from nameko_services.inventory import InitialStockError, InventoryService, parse_initial_stock
from nameko_services.notifications import NotificationsService
from nameko_services.orders import OrderConflict, OrdersService
from nameko_topology.database import DatabaseHandle
from nameko_topology.exceptions import InvalidMessage
from nameko_topology.testing.fakes import FakeCorrelation


@pytest.fixture
def database(sqlite_database):
    return sqlite_database


@pytest.fixture
def inventory_service(database, fake_outbox):
    database.create(inventory.metadata)
    with database.transaction() as connection:
        connection.execute(inventory.stock.insert(), [
            {"item": "widget-A", "quantity": 3}, {"item": "gadget-X", "quantity": 1}])
    return worker_factory(InventoryService, db=database, outbox=fake_outbox,
                          correlation=FakeCorrelation())


def test_reservation_takes_stock_and_publishes_reserved(inventory_service):
    inventory_service.on_order_placed([{"order_id": "o-1", "item": "widget-A", "quantity": 2}])

    assert inventory_service.get_inventory() == {"gadget-X": 1, "widget-A": 1}
    assert inventory_service.outbox.staged == [("InventoryReserved", {
        "order_id": "o-1", "item": "widget-A", "quantity": 2, "remaining": 1})]
    assert inventory_service.list_processed()["items"] == ["o-1"]


def test_the_same_order_twice_is_applied_once(inventory_service):
    order = {"order_id": "o-1", "item": "widget-A", "quantity": 1}
    inventory_service.on_order_placed([order])
    inventory_service.on_order_placed([order, order])

    assert inventory_service.get_inventory()["widget-A"] == 2
    assert len(inventory_service.outbox.staged) == 1
    assert inventory_service.list_processed()["items"] == ["o-1"]


def test_a_batch_reserves_each_new_order_once_in_the_order_of_its_item(inventory_service):
    inventory_service.on_order_placed([
        {"order_id": "o-1", "item": "widget-A", "quantity": 2},
        {"order_id": "o-2", "item": "gadget-X", "quantity": 1},
        {"order_id": "o-1", "item": "widget-A", "quantity": 2},  # a redelivered copy
        {"order_id": "o-3", "item": "widget-A", "quantity": 2},  # after o-1: 1 left
    ])

    assert inventory_service.get_inventory() == {"gadget-X": 0, "widget-A": 1}
    assert inventory_service.outbox.staged == [
        ("InventoryReserved", {"order_id": "o-2", "item": "gadget-X", "quantity": 1,
                               "remaining": 0}),
        ("InventoryReserved", {"order_id": "o-1", "item": "widget-A", "quantity": 2,
                               "remaining": 1}),
        ("InventoryFailed", {"order_id": "o-3", "item": "widget-A", "quantity": 2,
                             "reason": "insufficient stock for 'widget-A': 1 left, 2 requested"}),
    ]
    assert sorted(inventory_service.list_processed()["items"]) == ["o-1", "o-2", "o-3"]


def test_a_batch_the_stock_covers_gives_each_order_the_stock_left_after_it(inventory_service):
    inventory_service.on_order_placed([
        {"order_id": "o-1", "item": "widget-A", "quantity": 1},
        {"order_id": "o-2", "item": "gadget-X", "quantity": 1},
        {"order_id": "o-3", "item": "widget-A", "quantity": 2},
    ])

    assert inventory_service.get_inventory() == {"gadget-X": 0, "widget-A": 0}
    assert [(payload["order_id"], payload["remaining"])
            for _, payload in inventory_service.outbox.staged] == [
        ("o-2", 0), ("o-1", 2), ("o-3", 0)]
    assert sorted(inventory_service.list_processed()["items"]) == ["o-1", "o-2", "o-3"]


def test_an_order_committed_meanwhile_rolls_its_batch_back(inventory_service):
    order = {"order_id": "o-1", "item": "widget-A", "quantity": 1}
    inventory_service.on_order_placed([order])
    # as if another instance committed o-1 between the batch's inbox lookup and its insert
    inventory_service._unprocessed = lambda connection, orders: orders

    inventory_service.on_order_placed([order])  # alone: a duplicate, nothing changes
    with pytest.raises(inventory._ProcessedMeanwhile):  # the framework then runs each alone
        inventory_service.on_order_placed(
            [{"order_id": "o-2", "item": "gadget-X", "quantity": 1}, order])

    assert inventory_service.get_inventory() == {"gadget-X": 1, "widget-A": 2}
    assert len(inventory_service.outbox.staged) == 1
    assert inventory_service.list_processed()["items"] == ["o-1"]


@pytest.mark.parametrize("item, quantity, reason", [
    ("widget-A", 4, "insufficient stock for 'widget-A': 3 left, 4 requested"),
    ("no-such-thing", 1, "unknown item 'no-such-thing'"),
])
def test_reservation_that_cannot_be_met_fails_with_a_reason(
        inventory_service, item, quantity, reason):
    inventory_service.on_order_placed([{"order_id": "o-2", "item": item, "quantity": quantity}])

    assert inventory_service.get_inventory() == {"gadget-X": 1, "widget-A": 3}
    assert inventory_service.outbox.staged == [("InventoryFailed", {
        "order_id": "o-2", "item": item, "quantity": quantity, "reason": reason})]
    assert inventory_service.list_processed()["items"] == ["o-2"]


def test_initial_stock_defaults_and_parses():
    assert parse_initial_stock(None)["widget-A"] == 100
    assert parse_initial_stock('{"a": 5}') == {"a": 5}


@pytest.mark.parametrize("text, message", [
    ("{oops", "INITIAL_STOCK is not valid JSON"),
    ("[1]", "INITIAL_STOCK must be a JSON object"),
    ('{"a": -1}', "quantity of 'a' must be an integer >= 0, got -1"),
    ('{"a": 1.5}', "quantity of 'a' must be an integer >= 0, got 1.5"),
    ('{"a": true}', "quantity of 'a' must be an integer >= 0, got True"),
    ('{"": 1}', "item names must be 1 to 100 characters"),
])
def test_malformed_initial_stock_is_refused(text, message):
    with pytest.raises(InitialStockError, match=message):
        parse_initial_stock(text)


@pytest.fixture
def orders_service(database, fake_outbox):
    database.create(orders.metadata)
    return worker_factory(OrdersService, db=database, outbox=fake_outbox,
                          correlation=FakeCorrelation())


def test_place_order_stores_pending_and_publishes(orders_service):
    order = orders_service.place_order("widget-A", 2)

    assert order["status"] == "PENDING"
    assert orders_service.get_order(order["order_id"]) == order
    assert orders_service.outbox.staged == [("OrderPlaced", {
        "order_id": order["order_id"], "item": "widget-A", "quantity": 2})]


def test_placing_the_same_order_again_returns_it_and_publishes_nothing(orders_service):
    first = orders_service.place_order("widget-A", 2, order_id="client-1")
    again = orders_service.place_order("widget-A", 2, order_id="client-1")
    keyed = orders_service.place_order("widget-A", 1, idempotency_key="key-1")
    keyed_again = orders_service.place_order("widget-A", 1, idempotency_key="key-1")

    assert again == first
    assert keyed_again == keyed
    assert len(orders_service.list_orders()["items"]) == 2
    assert len(orders_service.outbox.staged) == 2


def test_reusing_an_order_id_for_another_order_is_a_conflict(orders_service):
    orders_service.place_order("widget-A", 2, order_id="client-1")
    with pytest.raises(OrderConflict, match="order_id already names order client-1"):
        orders_service.place_order("widget-A", 3, order_id="client-1")
    orders_service.place_order("widget-A", 2, idempotency_key="key-1")
    with pytest.raises(OrderConflict, match="Idempotency-Key already names order"):
        orders_service.place_order("gadget-X", 2, idempotency_key="key-1")


def test_place_orders_places_a_batch_and_refuses_only_its_conflicting_order(orders_service):
    orders_service.place_order("widget-A", 2, order_id="taken")

    entries = orders_service.place_orders([
        {"item": "widget-A", "quantity": 1, "order_id": "new-1"},
        {"item": "gadget-X", "quantity": 5, "order_id": "taken"},  # another order's id
        {"item": "widget-A", "quantity": 2, "order_id": "taken"},  # a retry of that order
        {"item": "gizmo-Z", "quantity": 3, "order_id": "new-2", "idempotency_key": "k"},
        {"item": "widget-A", "order_id": "no-quantity"},
        {"item": "widget-A", "quantity": 1, "colour": "red"},
    ])

    assert [entry.get("order", {}).get("order_id") for entry in entries] == [
        "new-1", None, "taken", "new-2", None, None]
    assert entries[1]["error"]["exc_type"] == "OrderConflict"
    assert "order_id already names order taken" in entries[1]["error"]["value"]
    assert [entries[n]["error"]["value"] for n in (4, 5)] == [
        "place_order arguments: 'quantity' missing", "place_order arguments: unknown 'colour'"]
    assert sorted(order["order_id"] for order in orders_service.list_orders()["items"]) == [
        "new-1", "new-2", "taken"]
    assert [payload["order_id"] for _, payload in orders_service.outbox.staged] == [
        "taken", "new-1", "new-2"]


def test_an_order_sent_twice_in_one_batch_is_placed_once(orders_service):
    order = {"item": "widget-A", "quantity": 1, "order_id": "o-1"}

    entries = orders_service.place_orders([order, {"item": "gadget-X", "quantity": 1}, order])

    assert entries[0] == entries[2]
    assert entries[0]["order"]["order_id"] == "o-1"
    assert len(orders_service.list_orders()["items"]) == 2
    assert len(orders_service.outbox.staged) == 2


def test_new_order_ids_sort_in_the_order_the_orders_were_placed(orders_service):
    placed = [orders_service.place_order("widget-A", 1)["order_id"] for _ in range(20)]
    placed += [entry["order"]["order_id"] for entry in orders_service.place_orders(
        [{"item": "widget-A", "quantity": 1}] * 20)]

    assert placed == sorted(placed)
    assert len(set(placed)) == 40


@pytest.fixture
def poisoned_orders(orders_service, database):
    """The orders service on a database that refuses, by a trigger, any order of item
    'poison': an error the database raises for one order of a batch, whatever it is."""
    with database.transaction() as connection:
        connection.execute(text(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON orders_orders "
            "WHEN NEW.item = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"))
    return orders_service


def test_an_order_the_database_cannot_store_fails_alone_not_its_batch(poisoned_orders):
    entries = poisoned_orders.place_orders([
        {"item": "widget-A", "quantity": 1, "order_id": "good-1"},
        {"item": "poison", "quantity": 1, "order_id": "bad"},
        {"item": "widget-A", "quantity": 2, "order_id": "good-2"},
    ])

    assert [entry.get("order", {}).get("order_id") for entry in entries] == [
        "good-1", None, "good-2"]
    assert entries[1]["error"]["exc_type"] == "IntegrityError"
    assert "poison refused" in entries[1]["error"]["value"]
    assert sorted(order["order_id"] for order in poisoned_orders.list_orders()["items"]) == [
        "good-1", "good-2"]
    assert [payload["order_id"] for _, payload in poisoned_orders.outbox.staged] == [
        "good-1", "good-2"]


def test_a_failing_order_among_repeats_fails_alone(poisoned_orders):
    poisoned_orders.place_order("widget-A", 1, order_id="placed")

    entries = poisoned_orders.place_orders([
        {"item": "widget-A", "quantity": 1, "order_id": "placed"},  # a repeat: IntegrityError
        {"item": "poison", "quantity": 1, "order_id": "bad"},
        {"item": "gadget-X", "quantity": 1, "order_id": "new"},
    ])

    assert [entry.get("order", {}).get("order_id") for entry in entries] == [
        "placed", None, "new"]
    assert sorted(order["order_id"] for order in poisoned_orders.list_orders()["items"]) == [
        "new", "placed"]
    assert [payload["order_id"] for _, payload in poisoned_orders.outbox.staged] == [
        "placed", "new"]


def test_a_string_no_database_can_store_is_refused_before_anything_is_written(orders_service):
    entries = orders_service.place_orders([
        {"item": "widget-A", "quantity": 1, "order_id": "good-1"},
        {"item": "probe-\ud800", "quantity": 1, "order_id": "bad"},
    ])

    assert entries[0]["order"]["order_id"] == "good-1"
    assert entries[1]["error"]["exc_type"] == "InvalidMessage"
    assert "surrogate" in entries[1]["error"]["value"]
    with pytest.raises(InvalidMessage):
        orders_service.place_order("probe-\ud800", 1)
    assert [order["order_id"] for order in orders_service.list_orders()["items"]] == ["good-1"]


def test_place_orders_refuses_what_is_not_a_list_of_orders(orders_service):
    with pytest.raises(InvalidMessage, match="orders must be a list of objects"):
        orders_service.place_orders({"item": "widget-A"})


def test_outcomes_settle_a_pending_order_once(orders_service):
    confirmed = orders_service.place_order("widget-A", 1)["order_id"]
    rejected = orders_service.place_order("widget-A", 9)["order_id"]

    orders_service.on_inventory_reserved(
        [{"order_id": confirmed, "item": "widget-A", "quantity": 1}])
    orders_service.on_inventory_failed([
        {"order_id": rejected, "item": "widget-A", "quantity": 9, "reason": "insufficient stock"},
        # a late, contradictory redelivery changes nothing, whether in a batch or alone
        {"order_id": confirmed, "item": "widget-A", "quantity": 1, "reason": "late"}])
    orders_service.on_inventory_failed(
        [{"order_id": confirmed, "item": "widget-A", "quantity": 1, "reason": "late"}])

    assert orders_service.get_order(confirmed)["status"] == "CONFIRMED"
    assert orders_service.get_order(rejected)["status"] == "REJECTED"
    assert orders_service.get_order(rejected)["reason"] == "insufficient stock"


def test_reasons_longer_than_their_column_are_cut_to_it(orders_service, inventory_service,
                                                        database):
    # SQLite would store them whole; PostgreSQL refuses them (tests/nameko_services/test_pipeline.py)
    rejected = orders_service.place_order("widget-A", 9)["order_id"]
    orders_service.on_inventory_failed([{"order_id": rejected, "item": "widget-A",
                                         "quantity": 9, "reason": "r" * 5000}])
    database.create(notifications.metadata)
    notices = worker_factory(NotificationsService, db=database,
                             correlation=FakeCorrelation("req-1"))
    notices.on_inventory_failed([{"order_id": rejected, "item": "widget-A", "quantity": 9,
                                  "reason": "r" * 5000}])

    reason = orders_service.get_order(rejected)["reason"]
    assert reason == "r" * 499 + "\u2026"
    [notice] = notices.list_notifications()["items"]
    assert notice["correlation_id"] == "req-1"  # the event's, as the handler found it
    assert len(notice["message"]) == 1000 and notice["message"].endswith("r\u2026")
    assert notice["message"].startswith(f"Order {rejected} could not be fulfilled: rrr")


def test_an_unknown_item_reason_fits_the_inbox_column(inventory_service, database):
    # repr() can make a 100-character item name 1,000 characters long
    item = "\U000e0001" * 100  # not printable: repr() writes each as 10 characters
    inventory_service.on_order_placed([{"order_id": "o-1", "item": item, "quantity": 1}])

    with database.transaction() as connection:
        [reason] = connection.execute(select(inventory.processed.c.reason)).scalars()
    assert len(reason) == 500 and reason.startswith("unknown item ")


def test_one_notification_per_order_outcome(database):
    database.create(notifications.metadata)
    service = worker_factory(NotificationsService, db=database,
                             correlation=FakeCorrelation("req-1"))
    event = {"order_id": "o-1", "item": "widget-A", "quantity": 2, "remaining": 5}

    service.on_inventory_reserved([event])
    service.on_inventory_reserved([event, event])
    service.on_inventory_failed([{**event, "order_id": "o-2", "reason": "unknown item"}])

    notices = service.list_notifications()["items"]
    assert [(n["order_id"], n["kind"], n["message"]) for n in notices] == [
        ("o-1", "confirmation", "Order o-1 confirmed: 2 x widget-A reserved"),
        ("o-2", "failure", "Order o-2 could not be fulfilled: unknown item"),
    ]


def test_notifications_are_read_from_a_cursor(database):
    database.create(notifications.metadata)
    service = worker_factory(NotificationsService, db=database,
                             correlation=FakeCorrelation("req-1"))
    service.on_inventory_reserved([
        {"order_id": f"o-{n}", "item": "widget-A", "quantity": 1, "remaining": 10 - n}
        for n in range(1, 6)])

    first_two = service.list_notifications(limit=2)
    assert [n["order_id"] for n in first_two["items"]] == ["o-1", "o-2"]
    assert first_two["next"] == first_two["items"][-1]["id"] and first_two["more"]
    rest = service.list_notifications(after=first_two["next"])
    assert [n["order_id"] for n in rest["items"]] == ["o-3", "o-4", "o-5"]
    assert not rest["more"]  # nothing after this page when it was read
    assert service.list_notifications(after=rest["next"]) == {
        "items": [], "next": rest["next"], "more": False}


@pytest.mark.parametrize("service_class", [OrdersService, InventoryService, NotificationsService])
def test_health_answers_once_the_database_does_and_raises_when_it_does_not(
        service_class, database, tmp_path):
    service = worker_factory(service_class, db=database)
    assert service.health() == {"status": "ok", "service": service_class.name}

    broken = DatabaseHandle(f"sqlite:///{tmp_path}/missing-dir/no.sqlite3")
    with pytest.raises(Exception, match="unable to open database file"):
        worker_factory(service_class, db=broken).health()
