"""Dead letters of the running pipeline: real service processes, the CLI, the gateway over HTTP."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import amqp
import pytest
import requests
from kombu import Connection

from nameko_topology.messages import (
    ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, QUEUE_HEADER, REASON_HEADER,
)
from nameko_topology.testing.broker import TestVhost, wait_for
from scripts.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("nameko-topology"))
TOKEN = "pipeline-admin-token"
DLQ = "dead_letter_queue"
STOCK = 100_000


@pytest.fixture(scope="module")
def live(rabbit_base_uri, tmp_path_factory):
    """(vhost, stack): the pipeline with the admin API on, in a vhost of its own."""
    vhost = TestVhost(rabbit_base_uri).create()
    stack = Stack(vhost.amqp_uri, tmp_path_factory.mktemp("dlq") / "data",
                  env={"ADMIN_TOKEN": TOKEN, "INITIAL_STOCK": json.dumps({"widget-A": STOCK})})
    try:
        stack.start(timeout=90)
        yield vhost, stack
    finally:
        stack.stop()
        vhost.delete()


def dlq(vhost, *argv):
    result = subprocess.run([CLI, "dlq", *argv], capture_output=True, text=True, cwd=ROOT,
                            timeout=120, stdin=subprocess.DEVNULL,
                            env={**os.environ, "AMQP_URI": vhost.amqp_uri})
    return result.returncode, result.stdout, result.stderr


def get(stack, path):
    response = requests.get(stack.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_order_expired_by_ttl_is_listed_and_replayed_once_inventory_is_back(live):
    vhost, stack = live
    stock = get(stack, "/inventory")["widget-A"]
    stack.stop_service("inventory")
    vhost.publish("orders", "order.placed",
                  {"order_id": "ttl-1", "item": "widget-A", "quantity": 1},
                  expiration=0.001)  # kombu: seconds; the message says 1 ms
    wait_for(lambda: vhost.depth(DLQ) == 1, description="the expired order dead-lettered")

    code, out, err = dlq(vhost, "list", "--json")
    assert code == 0, err
    (expired,) = json.loads(out)
    assert (expired["reason"], expired["source"], expired["queue"], expired["message_type"]) == (
        "expired", "broker", "order_placed_queue", "OrderPlaced")
    # over HTTP too: 401 without the token, the same record with it
    assert requests.get(stack.url + "/admin/dead-letters", timeout=10).status_code == 401
    listing = requests.get(stack.url + "/admin/dead-letters", timeout=10,
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert listing.status_code == 200
    assert [r["id"] for r in listing.json()["dead_letters"]] == [expired["id"]]

    stack.start_service("inventory")
    stack.wait_service_ready("inventory")
    code, out, err = dlq(vhost, "replay", "--all")

    assert code == 0, err
    wait_for(lambda: "ttl-1" in get(stack, "/processed"), description="the replayed order")
    assert get(stack, "/inventory")["widget-A"] == stock - 1
    assert vhost.depth(DLQ) == 0


def test_replaying_500_while_the_pipeline_runs_loses_and_doubles_nothing(live):
    vhost, stack = live
    stock = get(stack, "/inventory")["widget-A"]
    good = [f"good-{i}" for i in range(400)]
    poison = [f"poison-{i}" for i in range(100)]  # no quantity: dead-lettered again
    with Connection(vhost.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        for chunk in range(100):  # four good ones, then a poison one
            for order_id in good[4 * chunk:4 * chunk + 4] + [poison[chunk]]:
                payload = {"order_id": order_id, "item": "widget-A"}
                if order_id.startswith("good"):
                    payload["quantity"] = 1
                channel.basic_publish(amqp.Message(
                    json.dumps(payload), delivery_mode=2, content_type="application/json",
                    application_headers={REASON_HEADER: "RuntimeError: database down",
                                         QUEUE_HEADER: "order_placed_queue",
                                         ORIGINAL_EXCHANGE_HEADER: "orders",
                                         ORIGINAL_ROUTING_KEY_HEADER: "order.placed"}),
                    exchange="", routing_key=DLQ)
    assert vhost.depth(DLQ) == 500

    placed = []

    def place_orders():  # the pipeline's own traffic goes on meanwhile
        for _ in range(20):
            response = requests.post(stack.url + "/order", timeout=10,
                                     json={"item": "widget-A", "quantity": 1})
            placed.append(response.json()["order_id"])

    traffic = threading.Thread(target=place_orders)
    traffic.start()
    code, out, err = dlq(vhost, "replay", "--all")
    traffic.join()

    assert code == 0, err
    assert "replayed 500, failed 0" in out
    wait_for(lambda: set(good + placed) <= set(get(stack, "/processed")), timeout=60,
             description="every good replayed order and every placed one processed")
    wait_for(lambda: vhost.depth(DLQ) == 100, description="the poison ones back")
    back = vhost.take_messages(DLQ)
    assert sorted(json.loads(m["body"])["order_id"] for m in back) == sorted(poison)
    assert {m["headers"]["x-replay-count"] for m in back} == {1}
    assert all("quantity" in m["headers"][REASON_HEADER] for m in back)
    processed = get(stack, "/processed")
    assert len(processed) == len(set(processed))  # none twice
    assert not set(poison) & set(processed)
    assert get(stack, "/inventory")["widget-A"] == stock - 400 - 20
