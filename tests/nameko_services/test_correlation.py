"""One correlation id from the HTTP request to the notification, through the real pipeline:
the request's X-Request-ID is the AMQP correlation_id of OrderPlaced and InventoryReserved,
the order and the notification store it, and the JSON logs of all four processes carry it;
each order its own, also when 50 arrive at once and travel in batches."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from kombu import Connection, Exchange, Queue

from nameko_topology.testing.broker import TestVhost, wait_for
from scripts.stack import GATEWAY, SERVICES, Stack

pytestmark = pytest.mark.integration

TAPS = {"tap_orders": "orders", "tap_inventory": "inventory"}


@pytest.fixture(scope="module")
def traced(rabbit_base_uri, tmp_path_factory):
    """The pipeline with JSON logs at DEBUG (the services' per-order lines), and queues of the
    test's own bound to the orders and inventory exchanges."""
    vhost = TestVhost(rabbit_base_uri).create()
    stack = Stack(vhost.amqp_uri, tmp_path_factory.mktemp("correlation") / "data",
                  env={"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "ACCESS_LOG": "true"})
    try:
        stack.start(timeout=90)
        with Connection(vhost.amqp_uri) as connection:
            for queue, exchange in TAPS.items():
                Queue(queue, Exchange(exchange, no_declare=True), routing_key="#",
                      channel=connection.default_channel).declare()
        yield vhost, stack
    finally:
        stack.stop()
        vhost.delete()


def place(stack, request_id):
    response = requests.post(stack.url + "/order", json={"item": "widget-A", "quantity": 1},
                             headers={"X-Request-ID": request_id}, timeout=15)
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == request_id
    return response.json()["order_id"]


def tapped(vhost, seen, order_ids):
    """Every tapped message so far, by (message type, order id), once all of ``order_ids``
    have their OrderPlaced and InventoryReserved."""
    for queue in TAPS:
        for message in vhost.take_messages(queue):
            body = json.loads(message["body"])
            seen[(message["properties"]["type"], body["order_id"])] = message["properties"]
    return all((kind, order_id) in seen for order_id in order_ids
               for kind in ("OrderPlaced", "InventoryReserved"))


def notified(stack, order_ids):
    notices = {notice["order_id"]: notice for notice in requests.get(
        stack.url + "/notifications", timeout=10).json()}
    return notices if set(order_ids) <= set(notices) else None


def log_records(stack, name):
    return [json.loads(line) for line in stack.log_path(name).read_text().splitlines() if line]


def check(vhost, stack, request_ids):
    """Each order of ``request_ids`` (request id -> order id) carries its own id everywhere."""
    seen = {}
    wait_for(lambda: tapped(vhost, seen, request_ids.values()), timeout=60,
             description="OrderPlaced and InventoryReserved of every order")
    notices = wait_for(lambda: notified(stack, request_ids.values()), timeout=60,
                       description="every order's notification")
    for request_id, order_id in request_ids.items():
        assert seen[("OrderPlaced", order_id)]["correlation_id"] == request_id
        assert seen[("InventoryReserved", order_id)]["correlation_id"] == request_id
        assert notices[order_id]["correlation_id"] == request_id
        order = requests.get(f"{stack.url}/orders/{order_id}", timeout=10).json()
        assert order["correlation_id"] == request_id
    for name in (*SERVICES, GATEWAY):
        logged = {record.get("correlation_id") for record in log_records(stack, name)}
        assert set(request_ids) <= logged, (name, set(request_ids) - logged)


def test_one_order_carries_its_request_id_from_http_to_the_notification(traced):
    vhost, stack = traced
    check(vhost, stack, {"corr-one": place(stack, "corr-one")})


def test_fifty_concurrent_orders_each_keep_their_own_id_through_batches(traced):
    vhost, stack = traced
    request_ids = [f"corr-many-{number:02d}" for number in range(50)]
    with ThreadPoolExecutor(50) as pool:
        order_ids = list(pool.map(lambda request_id: place(stack, request_id), request_ids))
    check(vhost, stack, dict(zip(request_ids, order_ids)))


def test_a_request_without_a_usable_id_gets_one_made_for_it(traced):
    vhost, stack = traced
    response = requests.post(stack.url + "/order", json={"item": "widget-A", "quantity": 1},
                             headers={"X-Request-ID": "not safe!"}, timeout=15)
    made = response.headers["X-Request-ID"]
    assert response.status_code == 202 and made != "not safe!" and len(made) == 32
    check(vhost, stack, {made: response.json()["order_id"]})
