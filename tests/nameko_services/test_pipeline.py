"""The whole pipeline as a user runs it: real service processes, the gateway over HTTP, the broker.

Every test starts its own stack in a virtual host and data directory of its own.
"""
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from scripts.stack import Stack
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration

STOCK = {"widget-A": 100, "gadget-X": 5}


@pytest.fixture
def stack(vhost, tmp_path):
    stack = Stack(vhost.amqp_uri, tmp_path / "data",
                  env={"INITIAL_STOCK": json.dumps(STOCK), "MAX_WORKERS": "10"})
    try:
        stack.start(timeout=90)
        yield stack
    finally:
        stack.stop()


class Gateway:
    def __init__(self, url):
        self.url = url
        self.session = requests.Session()

    def post_order(self, item="widget-A", quantity=1, **extra):
        return self.session.post(f"{self.url}/order", json={"item": item, "quantity": quantity,
                                                              **extra}, timeout=10)

    def get(self, path):
        response = self.session.get(f"{self.url}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def gateway(stack):
    return Gateway(stack.url)


def order_message(order_id, item="widget-A", quantity=1):
    return {"order_id": order_id, "item": item, "quantity": quantity}


def test_an_order_over_http_takes_stock_and_notifies(gateway):
    response = gateway.post_order("widget-A", 1)

    assert response.status_code == 202
    order = response.json()
    assert order["status"] == "PENDING"
    wait_for(lambda: order["order_id"] in {n["order_id"] for n in gateway.get("/notifications")},
             description="the order's notification")
    assert gateway.get("/inventory")["widget-A"] == 99
    assert gateway.get(f"/orders/{order['order_id']}")["status"] == "CONFIRMED"
    assert gateway.get("/processed") == [order["order_id"]]
    health = gateway.get("/health")
    assert health["services"] == {"orders": "ok", "inventory": "ok", "notifications": "ok"}


def test_the_same_order_message_twice_takes_stock_once(vhost, gateway):
    vhost.publish("orders", "order.placed", order_message("dup-1"))
    vhost.publish("orders", "order.placed", order_message("dup-1"))

    wait_for(lambda: vhost.acked("order_placed_queue") >= 2, timeout=30,
             description="both deliveries acked")
    assert gateway.get("/inventory")["widget-A"] == 99
    assert gateway.get("/processed") == ["dup-1"]
    wait_for(lambda: gateway.get("/notifications"), description="the notification")
    assert [n["order_id"] for n in gateway.get("/notifications")] == ["dup-1"]


def test_malformed_messages_are_dead_lettered_and_valid_ones_still_processed(vhost, gateway):
    vhost.publish("orders", "order.placed", b"{this is not json", content_type="application/json")
    vhost.publish("orders", "order.placed", {"order_id": "m-1", "item": "widget-A"})
    vhost.publish("orders", "order.placed", order_message("ok-1"))

    wait_for(lambda: "ok-1" in gateway.get("/processed"), description="the valid order")
    wait_for(lambda: vhost.depth("dead_letter_queue") == 2, description="2 dead letters")
    dead = vhost.take_messages("dead_letter_queue")
    assert sorted(m["body"] for m in dead) == sorted([
        b"{this is not json", json.dumps({"order_id": "m-1", "item": "widget-A"}).encode()])
    assert all(m["headers"]["x-rejected-reason"].startswith("invalid message") for m in dead)
    assert gateway.get("/processed") == ["ok-1"]
    assert gateway.get("/inventory")["widget-A"] == 99


def test_backlog_waits_while_inventory_is_down_and_drains_after(vhost, stack, gateway):
    stack.stop_service("inventory")

    order_ids = [gateway.post_order().json()["order_id"] for _ in range(10)]

    wait_for(lambda: vhost.depth("order_placed_queue") == 10, description="10 waiting orders")
    stack.start_service("inventory")
    stack.wait_service_ready("inventory")
    wait_for(lambda: sorted(gateway.get("/processed")) == sorted(order_ids), timeout=60,
             description="all 10 processed")
    assert vhost.depth("order_placed_queue") == 0
    assert gateway.get("/inventory")["widget-A"] == 90


def test_150_concurrent_orders_against_stock_100_reserve_exactly_100(gateway):
    def place(_):
        return requests.post(f"{gateway.url}/order", json={"item": "widget-A", "quantity": 1},
                             timeout=30)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(place, range(150)))

    assert [r.status_code for r in responses] == [202] * 150
    wait_for(lambda: len(gateway.get("/processed")) == 150, timeout=120,
             description="150 processed orders")
    wait_for(lambda: {o["status"] for o in gateway.get("/orders")} <= {"CONFIRMED", "REJECTED"},
             timeout=60, description="every order settled")
    statuses = [o["status"] for o in gateway.get("/orders")]
    assert statuses.count("CONFIRMED") == 100
    assert statuses.count("REJECTED") == 50
    assert gateway.get("/inventory")["widget-A"] == 0
    wait_for(lambda: len(gateway.get("/notifications")) == 150, timeout=60,
             description="150 notices")
    kinds = [n["kind"] for n in gateway.get("/notifications")]
    assert kinds.count("confirmation") == 100


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"),
    (b"[1, 2]", "body"),
    (json.dumps({"quantity": 1}).encode(), "item"),
    (json.dumps({"item": "widget-A"}).encode(), "quantity"),
    (json.dumps({"item": "widget-A", "quantity": True}).encode(), "quantity"),
    (json.dumps({"item": "widget-A", "quantity": 1.5}).encode(), "quantity"),
    (json.dumps({"item": "widget-A", "quantity": "3"}).encode(), "quantity"),
    (json.dumps({"item": "widget-A", "quantity": 0}).encode(), "quantity"),
    (json.dumps({"item": "", "quantity": 1}).encode(), "item"),
    (json.dumps({"item": "x" * 101, "quantity": 1}).encode(), "item"),
])
def test_bad_order_requests_get_400_naming_the_field_and_change_nothing(
        vhost, gateway, body, field):
    response = requests.post(f"{gateway.url}/order", data=body,
                             headers={"Content-Type": "application/json"}, timeout=10)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert gateway.get("/orders") == []
    assert vhost.depth("order_placed_queue") == 0


def test_http_retry_with_the_same_idempotency_key_creates_one_order(gateway):
    key = str(uuid.uuid4())
    first = gateway.session.post(f"{gateway.url}/order", json={"item": "widget-A", "quantity": 2},
                                 headers={"Idempotency-Key": key}, timeout=10)
    again = gateway.session.post(f"{gateway.url}/order", json={"item": "widget-A", "quantity": 2},
                                 headers={"Idempotency-Key": key}, timeout=10)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["order_id"] == first.json()["order_id"]
    assert len(gateway.get("/orders")) == 1
    wait_for(lambda: gateway.get("/processed"), description="the order processed")
    assert gateway.get("/inventory")["widget-A"] == 98


def test_a_stopped_service_gives_503_not_a_hang(stack, gateway):
    stack.stop_service("notifications")

    response = requests.get(f"{gateway.url}/notifications", timeout=15)
    assert response.status_code == 503
    assert "notifications" in response.json()["error"]
    health = requests.get(f"{gateway.url}/health", timeout=15)
    assert health.status_code == 503
    assert health.json()["services"]["notifications"] != "ok"
    assert health.json()["services"]["orders"] == "ok"


def test_keep_alive_clients_beyond_the_gateway_threads_are_all_served(vhost, tmp_path):
    # every client holds its connection open between requests, as browsers and pools do; a
    # server that parks a connection per worker thread would leave the third one unserved
    stack = Stack(vhost.amqp_uri, tmp_path / "data", services=("inventory",),
                  env={"GATEWAY_THREADS": "2", "INITIAL_STOCK": json.dumps(STOCK)})
    try:
        stack.start(timeout=90)
        clients = [Gateway(stack.url) for _ in range(6)]
        for _ in range(2):  # the second round reuses each client's open connection
            with ThreadPoolExecutor(len(clients)) as pool:
                answers = list(pool.map(lambda client: client.get("/inventory"), clients))
            assert answers == [STOCK] * len(clients)
    finally:
        stack.stop()
