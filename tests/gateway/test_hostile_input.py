"""Hostile HTTP input against the real pipeline: Granian, the gateway, the services, the broker.

One stack serves the module's HTTP tests (each looks only at the orders it made); the PostgreSQL
test starts its own.
"""
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway.rpc import RpcClient
from scripts.stack import Stack
from nameko_topology.testing.broker import wait_for
from nameko_topology.testing.postgres import TestDatabase, server_available

pytestmark = pytest.mark.integration

STOCK = {"widget-A": 1000}
MAX_BODY_BYTES = 16384  # the gateway's default


@pytest.fixture(scope="module")
def stack(pipeline):
    return pipeline("hostile", env={"INITIAL_STOCK": json.dumps(STOCK)})


def post(stack, body, **kwargs):
    kwargs.setdefault("headers", {"Content-Type": "application/json"})
    return requests.post(f"{stack.url}/order", data=body, timeout=15, **kwargs)


def stored(stack, order_id):
    return requests.get(f"{stack.url}/orders/{order_id}", timeout=15).status_code == 200


def test_an_unstorable_item_is_a_400_and_fails_none_of_the_orders_sent_with_it(stack):
    valid_ids = [f"valid-{uuid.uuid4().hex}" for _ in range(36)]
    bodies = [json.dumps({"item": "probe-\ud800", "quantity": 1, "order_id": "probe-1"})]
    bodies += [json.dumps({"item": "widget-A", "quantity": 1, "order_id": order_id})
               for order_id in valid_ids]

    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: post(stack, body), bodies))

    bad, valid = responses[0], responses[1:]
    assert bad.status_code == 400 and bad.json()["field"] == "item"
    assert [response.status_code for response in valid] == [202] * 36
    assert all(stored(stack, order_id) for order_id in valid_ids)
    assert not stored(stack, "probe-1")


def test_an_order_no_database_can_store_fails_alone_in_its_batch(stack):
    # past the gateway's check (a direct RPC client, as `nameko shell` is): the orders service
    # itself must charge the error to that order only; OrderPlaced's shape refuses the lone
    # surrogate before anything is written
    client = RpcClient(stack.amqp_uri, timeout=10)
    try:
        entries = client.call("orders", "place_orders", orders=[
            {"item": "widget-A", "quantity": 1, "order_id": "rpc-good-1"},
            {"item": "probe-\ud800", "quantity": 1, "order_id": "rpc-bad"},
            {"item": "widget-A", "quantity": 1, "order_id": "rpc-good-2"},
        ])
    finally:
        client.close()

    assert [entry.get("order", {}).get("order_id") for entry in entries] == [
        "rpc-good-1", None, "rpc-good-2"]
    assert entries[1]["error"]["exc_type"] == "InvalidMessage"
    assert "lone surrogate" in entries[1]["error"]["value"]
    assert stored(stack, "rpc-good-1") and stored(stack, "rpc-good-2")
    assert not stored(stack, "rpc-bad")


@pytest.mark.parametrize("order_id", ["x\r\nSet-Cookie: a=b", "a/b", "x\n", "a b"])
def test_an_order_id_outside_the_alphabet_is_a_400_and_stores_nothing(stack, order_id):
    response = post(stack, json.dumps({"item": "widget-A", "quantity": 1, "order_id": order_id}))

    assert response.status_code == 400
    assert response.json()["field"] == "order_id"
    assert "Set-Cookie" not in response.headers
    orders = requests.get(f"{stack.url}/orders", timeout=15).json()
    assert order_id not in {order["order_id"] for order in orders}


@pytest.mark.parametrize("path", ["/orders/x%0D%0ASet-Cookie:%20a=b", "/orders/a%2Fb"])
def test_reading_an_id_outside_the_alphabet_is_a_json_404(stack, path):
    response = requests.get(stack.url + path, timeout=15)

    assert response.status_code == 404
    assert response.json()["error"]
    assert "Set-Cookie" not in response.headers


def test_the_location_of_an_accepted_order_is_its_url(stack):
    response = post(stack, json.dumps({"item": "widget-A", "quantity": 1,
                                       "order_id": "loc:1.a_b-c"}))

    assert response.status_code == 202
    assert response.headers["Location"] == "/orders/loc%3A1.a_b-c"
    assert requests.get(stack.url + response.headers["Location"], timeout=15).json()[
        "order_id"] == "loc:1.a_b-c"


def padded_order(order_id, size):
    """A valid order body of exactly ``size`` bytes."""
    body = json.dumps({"item": "widget-A", "quantity": 1, "order_id": order_id}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def chunked(*parts):
    # a generator body: requests sends it with Transfer-Encoding: chunked, no Content-Length
    return (part for part in parts)


def test_a_chunked_body_over_the_limit_is_a_413_not_cut_off(stack):
    response = post(stack, chunked(padded_order("chunk-over", MAX_BODY_BYTES), b"more bytes"))

    assert response.status_code == 413
    assert response.json()["field"] == "body"
    assert not stored(stack, "chunk-over")


def test_a_chunked_body_at_the_limit_is_placed(stack):
    body = padded_order("chunk-at", MAX_BODY_BYTES)
    response = post(stack, chunked(body[:5000], body[5000:]))

    assert response.status_code == 202
    assert stored(stack, "chunk-at")


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"])
def test_a_body_a_browser_may_send_cross_site_is_a_415(stack, content_type):
    body = json.dumps({"item": "widget-A", "quantity": 1, "order_id": "cross-site"})
    response = post(stack, body, headers={"Content-Type": content_type})

    assert response.status_code == 415
    assert response.json()["field"] == "Content-Type"
    assert not stored(stack, "cross-site")


def test_options_is_a_bodiless_204_naming_the_methods(stack):
    response = requests.options(f"{stack.url}/order", timeout=15)

    assert response.status_code == 204
    assert response.content == b""
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


# -- PostgreSQL: texts longer than their columns --------------------------------------------

available, why = server_available()


@pytest.mark.skipif(not available, reason=f"PostgreSQL not available: {why}")
def test_a_reason_longer_than_its_column_is_stored_cut_on_postgresql(vhost, tmp_path):
    with TestDatabase() as database:
        # no inventory: the outcome of the order is the one this test publishes
        stack = Stack(vhost.amqp_uri, tmp_path / "data", services=("orders", "notifications"),
                      env={"DATABASE_URL": database.url})
        try:
            stack.start(timeout=90)
            order = post(stack, json.dumps({"item": "widget-A", "quantity": 1})).json()
            vhost.publish("inventory", "inventory.failed", {
                "order_id": order["order_id"], "item": "widget-A", "quantity": 1,
                "reason": "r" * 5000})

            rejected = wait_for(lambda: [o for o in requests.get(
                f"{stack.url}/orders", timeout=15).json() if o["status"] == "REJECTED"],
                description="the order rejected")
            notices = wait_for(lambda: requests.get(
                f"{stack.url}/notifications", timeout=15).json(), description="the notice")
        finally:
            stack.stop()
        logs = "".join(stack.log_path(name).read_text() for name in ("orders", "notifications"))

    assert [o["reason"] for o in rejected] == ["r" * 499 + "\u2026"]
    [notice] = notices
    assert notice["kind"] == "failure" and len(notice["message"]) == 1000
    assert notice["message"].startswith(f"Order {order['order_id']} could not be fulfilled: r")
    assert vhost.depth("dead_letter_queue") == 0
    assert vhost.depth("order_status_failed_queue") == 0
    assert vhost.depth("inventory_failed_queue") == 0
    assert "retrying" not in logs
