"""The topology framework against the real broker: declaration, @handle, MessagePublisher.

Each test runs nameko containers in-process in a virtual host of its own.
"""
import json
from pathlib import Path

import pytest
from kombu import Connection
from nameko.amqp.publish import UndeliverableMessage
from nameko.rpc import rpc
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_hook, entrypoint_waiter

from nameko_topology import (
    MessagePublisher, PermanentError, TopologyMismatch, declare_topology, handle, load_topology,
)
from nameko_topology import rpc as topology_rpc
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"
VALID_ORDER = {"order_id": "o-1", "item": "widget-A", "quantity": 2}


class Recorder:
    """Collects what a test service's handlers received."""

    def __init__(self):
        self.received = []  # the payloads of the handler calls that returned
        self.calls = []     # the order ids of every batch handler call, failed or not

    def clear(self):
        self.received.clear()
        self.calls.clear()


received = Recorder()


def fail_for(order):
    """Raise what the test order's item asks for."""
    if order["item"] == "explode-permanently":
        raise PermanentError("this item can never be reserved")
    if order["item"] == "explode":
        raise RuntimeError("transient failure")


class OrderConsumer:
    name = "order_consumer"

    @handle("order_placed_queue")
    def on_order_placed(self, order):
        fail_for(order)
        received.received.append(order)


class BatchOrderConsumer:
    name = "batch_order_consumer"

    @handle("order_placed_queue", batch_size=50)
    def on_order_placed(self, orders):
        received.calls.append([order["order_id"] for order in orders])
        for order in orders:
            fail_for(order)
        received.received.extend(orders)  # all or nothing, like a transaction


class Publishing:
    name = "publishing"

    publish = MessagePublisher()

    @rpc
    def place(self, payload, correlation_id=None):
        return self.publish("OrderPlaced", payload, correlation_id=correlation_id)


class Echo:
    name = "echo"

    @topology_rpc
    def echo(self, value):
        return {"echoed": value}


@pytest.fixture(autouse=True)
def clean_recorder():
    received.clear()


@pytest.fixture
def config(vhost):
    return {"AMQP_URI": vhost.amqp_uri, "TOPOLOGY_FILE": str(REPO_TOPOLOGY), "max_workers": 4}


@pytest.fixture
def batch_config(config):
    # a prefetch above the batches, so that the broker lets a backlog come in batches
    return {**config, "PREFETCH_COUNT": 50}


def topology_in_broker(vhost):
    queues = {name: (q["durable"], q["arguments"]) for name, q in vhost.queues().items()}
    exchanges = {name: (e["type"], e["durable"]) for name, e in vhost.exchanges().items()}
    return queues, exchanges, vhost.bindings()


def test_start_up_declares_exactly_the_topology(vhost, config, container_factory):
    container = container_factory(OrderConsumer, config)
    container.start()

    queues, exchanges, bindings = topology_in_broker(vhost)
    topology = load_topology(REPO_TOPOLOGY)
    assert queues == {
        name: (True, spec.broker_arguments) for name, spec in topology.declared_queues.items()}
    assert set(topology.retry_queues) == {f"{name}.retry.100ms" for name in topology.queues
                                          if name != "dead_letter_queue"}
    assert queues["order_placed_queue"] == (True, {"x-dead-letter-exchange": "dlx_exchange"})
    assert exchanges == {"orders": ("topic", True), "inventory": ("topic", True),
                         "dlx_exchange": ("topic", True)}
    assert bindings == {
        (b.exchange, b.queue, key) for b in topology.bindings for key in b.routing_keys}
    assert ("orders", "order_placed_queue", "order.placed") in bindings
    assert ("dlx_exchange", "dead_letter_queue", "#") in bindings


def test_malformed_messages_are_dead_lettered_and_consumption_goes_on(
        vhost, config, container_factory):
    container = container_factory(OrderConsumer, config)
    container.start()

    vhost.publish("orders", "order.placed", b"{not json", content_type="application/json")
    vhost.publish("orders", "order.placed", b"[1, 2, 3]", content_type="application/json")
    vhost.publish("orders", "order.placed", {"order_id": "o-2", "item": "widget-A"})
    vhost.publish("orders", "order.placed",
                  {"order_id": "o-3", "item": "widget-A", "quantity": "3"})
    with entrypoint_waiter(container, "on_order_placed", timeout=10):
        vhost.publish("orders", "order.placed", VALID_ORDER)

    assert received.received == [VALID_ORDER]
    wait_for(lambda: vhost.depth("dead_letter_queue") == 4, timeout=10,
             description="4 messages in dead_letter_queue")
    dead = vhost.take_messages("dead_letter_queue")
    reasons = {m["body"]: m["headers"]["x-rejected-reason"] for m in dead}
    assert "not valid JSON" in reasons[b"{not json"]
    assert "must be a JSON object, got list" in reasons[b"[1, 2, 3]"]
    assert "field 'quantity' is missing" in reasons[
        json.dumps({"order_id": "o-2", "item": "widget-A"}).encode()]
    assert "field 'quantity': '3' is not of type 'integer'" in reasons[
        json.dumps({"order_id": "o-3", "item": "widget-A", "quantity": "3"}).encode()]
    assert {m["headers"]["x-rejected-queue"] for m in dead} == {"order_placed_queue"}
    assert {m["routing_key"] for m in dead} == {"order.placed"}
    assert vhost.depth("order_placed_queue") == 0
    assert container.started  # still running
    assert vhost.consumers("order_placed_queue") == 1


def publish_backlog(vhost, items):
    """Queue an order per item in ``order_placed_queue`` before any consumer runs; a bytes item
    is published as the body itself. Returns the orders' ids, ``o-<position>``."""
    with Connection(vhost.amqp_uri) as connection:
        declare_topology(connection, load_topology(REPO_TOPOLOGY))
    for i, item in enumerate(items):
        body = item if isinstance(item, bytes) else {
            "order_id": f"o-{i}", "item": item, "quantity": 1}
        vhost.publish("orders", "order.placed", body, content_type="application/json")
    return [f"o-{i}" for i in range(len(items))]


def wait_until_settled(vhost, handled, deliveries, dead):
    """Wait until ``handled`` orders were received, ``deliveries`` acked (dead-lettered ones
    included) and none is left unacked; check that ``dead`` were dead-lettered and the consumer
    is still there."""
    wait_for(lambda: len(received.received) == handled, timeout=30,
             description=f"{handled} handled")
    wait_for(lambda: vhost.acked("order_placed_queue") == deliveries, timeout=30,
             description=f"{deliveries} acks in the broker's statistics")

    def unacked():  # the statistics of a young queue may not have the field yet
        return vhost.queues()["order_placed_queue"].get("messages_unacknowledged")
    wait_for(lambda: unacked() == 0, timeout=30, description="no delivery left unacked")
    assert vhost.depth("order_placed_queue") == 0
    assert vhost.depth("dead_letter_queue") == dead
    assert vhost.consumers("order_placed_queue") == 1


def handled_ids():
    return sorted(order["order_id"] for order in received.received)


def test_every_delivery_of_a_backlog_is_acked_once(vhost, config, container_factory):
    # Workers finishing together share one ack (basic.ack multiple=True): it must cover every
    # finished delivery, never one still in work, and step over dead-lettered ones.
    ids = publish_backlog(vhost, ["explode-permanently" if i % 20 == 0 else "widget-A"
                                  for i in range(200)])
    container = container_factory(OrderConsumer, {**config, "max_workers": 10})
    container.start()

    wait_until_settled(vhost, handled=190, deliveries=200, dead=10)
    assert handled_ids() == sorted(ids[i] for i in range(200) if i % 20)


def test_a_batch_handler_gets_a_backlog_in_lists_each_message_once(
        vhost, batch_config, container_factory):
    ids = publish_backlog(vhost, ["widget-A"] * 60)
    container = container_factory(BatchOrderConsumer, batch_config)
    container.start()

    wait_until_settled(vhost, handled=60, deliveries=60, dead=0)
    assert max(len(call) for call in received.calls) > 1
    assert handled_ids() == sorted(ids)
    assert sorted(order_id for call in received.calls for order_id in call) == sorted(ids)


def test_a_permanent_error_in_a_batch_dead_letters_only_that_message(
        vhost, batch_config, container_factory):
    ids = publish_backlog(vhost, ["explode-permanently" if i == 7 else "widget-A"
                                  for i in range(30)])
    container = container_factory(BatchOrderConsumer, batch_config)
    container.start()

    wait_until_settled(vhost, handled=29, deliveries=30, dead=1)
    [dead] = vhost.take_messages("dead_letter_queue")
    assert json.loads(dead["body"])["order_id"] == "o-7"
    assert dead["headers"]["x-rejected-reason"] == (
        "PermanentError: this item can never be reserved")
    assert any(len(call) > 1 for call in received.calls if "o-7" in call)  # it came in a batch
    assert received.calls.count(["o-7"]) == 1  # then alone, once
    assert handled_ids() == sorted(set(ids) - {"o-7"})


def test_invalid_json_in_a_backlog_is_dead_lettered_and_the_valid_ones_batched(
        vhost, batch_config, container_factory):
    ids = publish_backlog(vhost, [b"{not json" if i in (5, 12) else "widget-A"
                                  for i in range(20)])
    container = container_factory(BatchOrderConsumer, batch_config)
    container.start()

    wait_until_settled(vhost, handled=18, deliveries=20, dead=2)
    dead = vhost.take_messages("dead_letter_queue")
    assert [m["body"] for m in dead] == [b"{not json"] * 2
    assert all("not valid JSON" in m["headers"]["x-rejected-reason"] for m in dead)
    assert max(len(call) for call in received.calls) > 1
    assert handled_ids() == sorted(set(ids) - {"o-5", "o-12"})


def test_a_transient_error_in_a_batch_is_retried_alone(vhost, batch_config, container_factory):
    attempts = load_topology(REPO_TOPOLOGY).queue("order_placed_queue").retry.max_attempts
    ids = publish_backlog(vhost, ["explode" if i == 3 else "widget-A" for i in range(20)])
    container = container_factory(BatchOrderConsumer, batch_config)
    container.start()

    # the broker counts an ack for each attempt: the retries are copies of the message
    wait_until_settled(vhost, handled=19, deliveries=20 + attempts - 1, dead=1)
    [dead] = vhost.take_messages("dead_letter_queue")
    assert dead["headers"]["x-rejected-reason"] == (
        f"handler failed {attempts} times, last: RuntimeError: transient failure")
    assert dead["headers"]["x-attempt"] == attempts
    assert received.calls.count(["o-3"]) == attempts
    assert handled_ids() == sorted(set(ids) - {"o-3"})


def test_permanent_handler_error_is_dead_lettered_at_once(vhost, config, container_factory):
    container = container_factory(OrderConsumer, config)
    container.start()

    with entrypoint_waiter(container, "on_order_placed", timeout=10):
        vhost.publish("orders", "order.placed",
                      {"order_id": "o-4", "item": "explode-permanently", "quantity": 1})

    wait_for(lambda: vhost.depth("dead_letter_queue") == 1, timeout=10,
             description="the message in dead_letter_queue")
    [dead] = vhost.take_messages("dead_letter_queue")
    assert dead["headers"]["x-rejected-reason"] == (
        "PermanentError: this item can never be reserved")


def test_transient_handler_error_is_retried_then_dead_lettered(vhost, config, container_factory):
    container = container_factory(OrderConsumer, config)
    container.start()
    attempts = load_topology(REPO_TOPOLOGY).queue("order_placed_queue").retry.max_attempts

    vhost.publish("orders", "order.placed", {"order_id": "o-5", "item": "explode", "quantity": 1})

    wait_for(lambda: vhost.depth("dead_letter_queue") == 1, timeout=20,
             description="the message in dead_letter_queue")
    [dead] = vhost.take_messages("dead_letter_queue")
    assert dead["headers"]["x-rejected-reason"] == (
        f"handler failed {attempts} times, last: RuntimeError: transient failure")
    assert dead["headers"]["x-attempt"] == attempts
    assert dead["routing_key"] == "order.placed"
    assert vhost.depth("order_placed_queue") == 0


def test_publisher_sends_a_checked_confirmed_persistent_message(vhost, config, container_factory):
    container = container_factory(Publishing, config)
    container.start()

    with entrypoint_hook(container, "place") as place:
        message_id = place(VALID_ORDER, correlation_id="corr-1")
        with pytest.raises(Exception) as invalid:
            place({"order_id": "o-6", "item": "widget-A", "quantity": 0})

    assert "field 'quantity': 0 is less than the minimum of 1" in str(invalid.value)
    [message] = vhost.take_messages("order_placed_queue")
    assert json.loads(message["body"]) == VALID_ORDER
    assert message["properties"]["message_id"] == message_id
    assert message["properties"]["correlation_id"] == "corr-1"
    assert message["properties"]["delivery_mode"] == 2
    assert message["properties"]["content_type"] == "application/json"


def test_unroutable_message_is_an_error(vhost, config, container_factory):
    container = container_factory(Publishing, config)
    container.start()
    # unbind the only queue of order.placed: the broker can no longer route OrderPlaced
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.queue_unbind("order_placed_queue", "orders", "order.placed")

    with entrypoint_hook(container, "place") as place:
        with pytest.raises(UndeliverableMessage):
            place(VALID_ORDER)


def test_argument_mismatch_fails_start_up_naming_the_entity(vhost, config, container_factory):
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.queue_declare(
            "order_placed_queue", durable=True, auto_delete=False,
            arguments={"x-message-ttl": 60000})

    container = container_factory(OrderConsumer, config)
    with pytest.raises(TopologyMismatch) as mismatch:
        container.start()

    message = str(mismatch.value)
    assert "queue 'order_placed_queue' already exists on the broker with different arguments" in message
    assert '"x-dead-letter-exchange": "dlx_exchange"' in message  # what topology.yaml declares
    assert '"x-message-ttl": 60000' in message  # what the broker holds
    # nothing was deleted or changed
    assert vhost.queues()["order_placed_queue"]["arguments"] == {"x-message-ttl": 60000}


def test_declare_topology_is_idempotent(vhost):
    topology = load_topology(REPO_TOPOLOGY)
    with Connection(vhost.amqp_uri) as connection:
        declare_topology(connection, topology)
        first = topology_in_broker(vhost)
        declare_topology(connection, topology)
    assert topology_in_broker(vhost) == first


def test_topology_is_declared_again_after_a_reconnect(vhost, config, container_factory):
    container = container_factory(OrderConsumer, config)
    container.start()
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.queue_delete("dead_letter_queue")
    assert "dead_letter_queue" not in vhost.queues()

    vhost.close_connections()

    wait_for(lambda: "dead_letter_queue" in vhost.queues(), timeout=20,
             description="dead_letter_queue declared again")
    wait_for(lambda: vhost.consumers("order_placed_queue") == 1, timeout=20,
             description="the consumer back on order_placed_queue")
    with entrypoint_waiter(container, "on_order_placed", timeout=10):
        vhost.publish("orders", "order.placed", VALID_ORDER)
    assert received.received == [VALID_ORDER]


def test_rpc_replies_go_out_after_the_broker_closed_the_reply_connection(
        vhost, config, container_factory):
    container = container_factory(Echo, config)
    container.start()
    with ClusterRpcProxy(config, timeout=10) as cluster:
        assert cluster.echo.echo("first") == {"echoed": "first"}

    # the held reply connection too: its next reply finds the broker's close and reconnects
    vhost.close_connections()

    wait_for(lambda: vhost.consumers("rpc-echo") == 1, timeout=20,
             description="the RPC consumer back on rpc-echo")
    with ClusterRpcProxy(config, timeout=10) as cluster:
        assert [cluster.echo.echo(n) for n in range(3)] == [{"echoed": n} for n in range(3)]


def test_a_quorum_rpc_queue_answers_calls(vhost, config, container_factory):
    container = container_factory(Echo, {**config, "RPC_QUEUE_TYPE": "quorum"})
    container.start()
    with ClusterRpcProxy(config, timeout=10) as cluster:
        assert cluster.echo.echo("on quorum") == {"echoed": "on quorum"}
    assert vhost.queues()["rpc-echo"]["arguments"] == {"x-queue-type": "quorum"}


def test_the_rpc_queue_is_classic_by_default(vhost, config, container_factory):
    container_factory(Echo, config).start()
    wait_for(lambda: vhost.consumers("rpc-echo") == 1, timeout=20,
             description="the RPC consumer on rpc-echo")
    assert vhost.queues()["rpc-echo"]["arguments"] == {}


def test_an_unknown_rpc_queue_type_fails_start_up_naming_the_key(config, container_factory):
    with pytest.raises(ValueError,
                       match="RPC_QUEUE_TYPE must be one of classic, quorum, got 'mirrored'"):
        container_factory(Echo, {**config, "RPC_QUEUE_TYPE": "mirrored"}).start()
