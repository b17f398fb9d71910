"""Retries on the broker: a failed message waits in a retry queue, not in a worker.

Each test runs a nameko container in-process, in a virtual host of its own, on the pipeline's
topology with the retry block of ``order_placed_queue`` replaced.
"""
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from nameko_topology import handle
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"

calls = []  # (order_id, attempt time) of every handler call
handled = []  # order ids whose handler returned
failures_left = {}  # order id -> how many more calls fail


class FlakyConsumer:
    name = "flaky_consumer"

    @handle("order_placed_queue")
    def on_order_placed(self, order):
        calls.append((order["order_id"], time.monotonic()))
        if failures_left.get(order["order_id"], 0) > 0:
            failures_left[order["order_id"]] -= 1
            raise RuntimeError(f"transient failure of {order['order_id']}")
        handled.append(order["order_id"])


@pytest.fixture(autouse=True)
def clean_records():
    calls.clear()
    handled.clear()
    failures_left.clear()


def config_with_retry(vhost, tmp_path, retry):
    document = yaml.safe_load(REPO_TOPOLOGY.read_text())
    [queue] = [q for q in document["queues"] if q["name"] == "order_placed_queue"]
    queue["retry"] = retry
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document))
    # one worker and one prefetch slot: a message held by a waiting retry would block the rest
    return {"AMQP_URI": vhost.amqp_uri, "TOPOLOGY_FILE": str(path), "max_workers": 1,
            "PREFETCH_COUNT": 1}


def order(order_id):
    return {"order_id": order_id, "item": "widget-A", "quantity": 1}


def test_a_message_that_fails_twice_is_handled_on_its_third_attempt_after_the_delays(
        vhost, tmp_path, container_factory):
    config = config_with_retry(vhost, tmp_path, {"delays": ["300ms", "600ms"]})
    container_factory(FlakyConsumer, config).start()
    failures_left["flaky"] = 2

    vhost.publish("orders", "order.placed", order("flaky"))

    wait_for(lambda: handled == ["flaky"], timeout=20, description="the third attempt")
    times = [at for order_id, at in calls]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.3
    assert times[2] - times[1] >= 0.6
    assert vhost.depth("order_placed_queue.retry.300ms") == 0
    assert vhost.depth("order_placed_queue.retry.600ms") == 0
    assert vhost.depth("dead_letter_queue") == 0


def test_a_valid_message_behind_a_failing_one_is_handled_while_that_one_waits(
        vhost, tmp_path, container_factory):
    config = config_with_retry(vhost, tmp_path, {"delays": ["10m"]})
    container_factory(FlakyConsumer, config).start()
    failures_left["failing"] = 1

    vhost.publish("orders", "order.placed", order("failing"))
    vhost.publish("orders", "order.placed", order("valid"))

    wait_for(lambda: handled == ["valid"], timeout=20, description="the valid order handled")
    assert vhost.depth("order_placed_queue.retry.10m") == 1
    assert vhost.depth("order_placed_queue") == 0


def test_a_message_that_always_fails_is_dead_lettered_with_a_complete_record(
        vhost, tmp_path, container_factory):
    config = config_with_retry(vhost, tmp_path, {"max_attempts": 3, "delays": ["50ms"]})
    container_factory(FlakyConsumer, config).start()
    failures_left["poison"] = 1000
    before = datetime.now().astimezone()

    vhost.publish("orders", "order.placed", order("poison"), message_id="m-poison")

    wait_for(lambda: vhost.depth("dead_letter_queue") == 1, timeout=20,
             description="the message in dead_letter_queue")
    [dead] = vhost.take_messages("dead_letter_queue")
    headers = dead["headers"]
    assert len(calls) == 3
    assert headers["x-rejected-reason"] == (
        "handler failed 3 times, last: RuntimeError: transient failure of poison")
    assert headers["x-attempt"] == 3
    assert len(headers["x-dead-letter-id"]) == 32
    assert headers["x-exception-type"].endswith("RuntimeError")
    assert headers["x-exception-message"] == "transient failure of poison"
    assert "RuntimeError: transient failure of poison" in headers["x-exception-traceback"]
    assert (headers["x-service"], headers["x-handler"]) == ("flaky_consumer", "on_order_placed")
    first = datetime.fromisoformat(headers["x-first-failure-at"])
    last = datetime.fromisoformat(headers["x-last-failure-at"])
    assert before <= first < last
    assert (headers["x-original-exchange"], headers["x-original-routing-key"],
            headers["x-rejected-queue"]) == ("orders", "order.placed", "order_placed_queue")
    # RabbitMQ's own record of the two waits in the retry queue is kept
    [death] = headers["x-death"]
    assert (death["queue"], death["reason"], death["count"]) == (
        "order_placed_queue.retry.50ms", "expired", 2)
    assert dead["properties"]["message_id"] == "m-poison"
    assert dead["routing_key"] == "order.placed"
    assert vhost.depth("order_placed_queue") == 0


def test_the_attempt_count_survives_a_restart_of_the_service(vhost, tmp_path, container_factory):
    config = config_with_retry(vhost, tmp_path, {"max_attempts": 2, "delays": ["3s"]})
    first = container_factory(FlakyConsumer, config)
    first.start()
    failures_left["poison"] = 1000

    vhost.publish("orders", "order.placed", order("poison"))
    wait_for(lambda: vhost.depth("order_placed_queue.retry.3s") == 1, timeout=20,
             description="the failed message waiting in its retry queue")
    first.stop()
    wait_for(lambda: vhost.depth("order_placed_queue") == 1, timeout=20,
             description="the message back in its queue, with nobody consuming")
    container_factory(FlakyConsumer, config).start()

    wait_for(lambda: vhost.depth("dead_letter_queue") == 1, timeout=20,
             description="the message in dead_letter_queue")
    [dead] = vhost.take_messages("dead_letter_queue")
    assert len(calls) == 2  # its second attempt was its last, although the service restarted
    assert dead["headers"]["x-attempt"] == 2
    assert dead["headers"]["x-rejected-reason"].startswith("handler failed 2 times")
