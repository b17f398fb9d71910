"""The shipping service in a nameko runner against the real broker, in a vhost of its own."""
import json

import pytest
from nameko.testing.services import entrypoint_hook
from nameko.testing.utils import get_container

from examples.shipping.service import ShippingService

pytestmark = pytest.mark.integration

RESERVATION = {"order_id": "o-1", "item": "widget-A", "quantity": 2, "remaining": 98}


def call(runner, method, *args):
    """Call an RPC method of the runner's shipping service."""
    with entrypoint_hook(get_container(runner, ShippingService), method) as rpc:
        return rpc(*args)


def test_a_reservation_delivered_twice_is_shipped_once_and_announced_once(
        run_services, publish, rabbit_vhost, wait_for, take_messages):
    runner = run_services(ShippingService)
    reservation_id = publish("InventoryReserved", RESERVATION)
    publish("InventoryReserved", RESERVATION)  # a redelivery, as the broker may make one

    wait_for(lambda: rabbit_vhost.acked("shipping_reserved_queue") == 2,
             description="both deliveries acked")
    shipment = call(runner, "get_shipment", "o-1")
    assert shipment == {"order_id": "o-1", "item": "widget-A", "quantity": 2,
                        "scheduled_at": shipment["scheduled_at"]}
    assert [s["order_id"] for s in call(runner, "list_shipments")["items"]] == ["o-1"]

    runner.stop()  # the outbox publishes what was staged before it stops
    events = take_messages("shipment_scheduled_queue")
    assert [json.loads(event["body"]) for event in events] == [shipment]
    assert events[0]["properties"]["type"] == "ShipmentScheduled"
    # the event names what caused it
    assert events[0]["properties"]["correlation_id"] == reservation_id


MALFORMED = {  # body -> the reason its dead letter carries
    b"{not json": "invalid message: body is not valid JSON: JSONDecodeError: Expecting property "
                  "name enclosed in double quotes: line 1 column 2 (char 1)",
    b"[1, 2]": "invalid message: body must be a JSON object, got list",
    b'{"order_id": "o-2", "item": "widget-A"}':
        "invalid message: InventoryReserved: field 'quantity' is missing",
    b'{"order_id": "o-3", "item": "widget-A", "quantity": true}':
        "invalid message: InventoryReserved: field 'quantity': True is not of type 'integer'",
    b'{"order_id": "o-4", "item": "widget-A", "quantity": 1, "remaining": -1}':
        "invalid message: InventoryReserved: field 'remaining': -1 is less than the minimum of 0",
}


def test_malformed_reservations_are_dead_lettered_with_their_reason_and_shipping_goes_on(
        run_services, publish, publish_raw, queue_depth, dead_letters, wait_for):
    runner = run_services(ShippingService)
    for body in MALFORMED:
        publish_raw("inventory", "inventory.reserved", body)
    publish("InventoryReserved", RESERVATION)

    wait_for(lambda: call(runner, "get_shipment", "o-1"), description="o-1 shipped")
    wait_for(lambda: queue_depth("shipping_dead_letter_queue") == len(MALFORMED),
             description="every malformed reservation dead-lettered")
    # workers run side by side: dead letters need not come in the order of the bodies
    assert {letter["body"]: (letter["queue"], letter["reason"]) for letter in dead_letters()} == {
        body: ("shipping_reserved_queue", reason) for body, reason in MALFORMED.items()}
    assert [s["order_id"] for s in call(runner, "list_shipments")["items"]] == ["o-1"]
    assert queue_depth("shipping_reserved_queue") == 0
