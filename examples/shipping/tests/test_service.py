"""The shipping service's rules, with nameko's ``worker_factory``: a real SQLite database and
a fake outbox that checks each event against the topology and records it."""
import pytest
from nameko.testing.services import worker_factory

from examples.shipping.service import ShippingService, metadata

RESERVATION = {"order_id": "o-1", "item": "widget-A", "quantity": 2, "remaining": 98}


@pytest.fixture
def shipping(sqlite_database, fake_outbox):
    # worker_factory runs no extension's setup(): create the service's tables here
    sqlite_database.create(metadata)
    return worker_factory(ShippingService, db=sqlite_database, outbox=fake_outbox)


def test_a_reservation_schedules_a_shipment_and_stages_its_event(shipping):
    shipping.on_inventory_reserved(RESERVATION)

    shipment = shipping.get_shipment("o-1")
    assert shipment == {"order_id": "o-1", "item": "widget-A", "quantity": 2,
                        "scheduled_at": shipment["scheduled_at"]}
    assert shipping.outbox.staged == [("ShipmentScheduled", shipment)]


def test_the_same_reservation_twice_schedules_one_shipment(shipping):
    shipping.on_inventory_reserved(RESERVATION)
    shipping.on_inventory_reserved(RESERVATION)

    assert [s["order_id"] for s in shipping.list_shipments()["items"]] == ["o-1"]
    assert [message_type for message_type, _ in shipping.outbox.staged] == ["ShipmentScheduled"]


def test_shipments_are_listed_oldest_first_and_an_unknown_order_has_none(shipping):
    for order_id in ("o-2", "o-1", "o-3"):
        shipping.on_inventory_reserved({**RESERVATION, "order_id": order_id})

    assert [s["order_id"] for s in shipping.list_shipments()["items"]] == ["o-2", "o-1", "o-3"]
    assert shipping.get_shipment("o-4") is None


def test_health_answers_ok(shipping):
    assert shipping.health() == {"status": "ok", "service": "shipping"}
