"""The outbox and its relay against the real broker and a SQLite database."""
import json
from pathlib import Path

import pytest
from kombu import Connection
from nameko.containers import WorkerContext
from nameko.rpc import rpc
from nameko.testing.services import entrypoint_hook
from sqlalchemy import MetaData, func, select

from nameko_topology import Database, Outbox
from nameko_topology.batch import BatchPublisher
from nameko_topology.database import DatabaseHandle
from nameko_topology.outbox import outbox_table
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"
ORDER = {"order_id": "o-1", "item": "widget-A", "quantity": 1}


class Staging:
    name = "staging"

    db = Database(MetaData())
    outbox = Outbox("db")

    @rpc
    def stage(self, payload, fail=False):
        with self.db.transaction() as connection:
            message_id = self.outbox.add(connection, "OrderPlaced", payload)
            if fail:
                raise RuntimeError("rolled back")
        return message_id


@pytest.fixture
def config(vhost, tmp_path):
    return {"AMQP_URI": vhost.amqp_uri, "TOPOLOGY_FILE": str(REPO_TOPOLOGY),
            "DATA_DIR": str(tmp_path)}


def stored_rows(tmp_path):
    database = DatabaseHandle(f"sqlite:///{tmp_path}/staging.sqlite3")
    table = outbox_table(MetaData(), "staging")
    with database.transaction() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar()


def test_a_committed_message_is_published_and_then_deleted(vhost, config, tmp_path,
                                                            container_factory):
    container = container_factory(Staging, config)
    container.start()

    with entrypoint_hook(container, "stage") as stage:
        message_id = stage(ORDER)
        with pytest.raises(RuntimeError):
            stage({**ORDER, "order_id": "o-2"}, fail=True)

    wait_for(lambda: vhost.depth("order_placed_queue") == 1, description="the message")
    wait_for(lambda: stored_rows(tmp_path) == 0, description="the outbox emptied")
    [message] = vhost.take_messages("order_placed_queue")
    assert json.loads(message["body"]) == ORDER
    assert message["properties"]["message_id"] == message_id
    assert message["properties"]["delivery_mode"] == 2
    assert vhost.depth("order_placed_queue") == 0  # the rolled-back one never left


def test_a_message_stored_before_a_crash_is_published_after_the_restart(
        vhost, config, tmp_path, container_factory):
    first = container_factory(Staging, config)
    first.start()
    # the relay never runs: as if the process died between commit and publish
    first.kill()
    outbox = next(d for d in first.dependencies if d.attr_name == "outbox")
    with outbox.database.transaction() as connection:
        message_id = outbox_handle(outbox).add(connection, "OrderPlaced", ORDER)
    assert stored_rows(tmp_path) == 1

    container_factory(Staging, config).start()

    wait_for(lambda: vhost.depth("order_placed_queue") == 1, description="the stored message")
    [message] = vhost.take_messages("order_placed_queue")
    assert message["properties"]["message_id"] == message_id
    wait_for(lambda: stored_rows(tmp_path) == 0, description="the outbox emptied")


def outbox_handle(outbox):
    return outbox.get_dependency(WorkerContext(outbox.container, None, None))


def test_an_unroutable_message_stays_in_the_outbox(vhost, config, tmp_path, container_factory,
                                                   caplog):
    container = container_factory(Staging, config)
    container.start()
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.queue_unbind("order_placed_queue", "orders", "order.placed")

    with entrypoint_hook(container, "stage") as stage:
        message_id = stage(ORDER)

    wait_for(lambda: any(message_id in r.getMessage() and "not routed" in r.getMessage()
                         for r in caplog.records), description="the error logged")
    assert stored_rows(tmp_path) == 1


def test_batch_publisher_sends_the_batch_after_a_nack_on_a_fresh_channel(vhost):
    publisher = BatchPublisher(vhost.amqp_uri)
    with Connection(vhost.amqp_uri) as connection:
        # full at once: RabbitMQ nacks every message published to it
        connection.default_channel.queue_declare(
            "full", durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    message = {"exchange": "", "routing_key": "full", "body": "{}", "message_id": "m-1",
               "correlation_id": "c", "type": "OrderPlaced"}
    try:
        first = publisher.publish([message])
        nacked_on = publisher._held.connection
        with Connection(vhost.amqp_uri) as connection:
            connection.default_channel.queue_purge("full")
            connection.default_channel.queue_delete("full")
            connection.default_channel.queue_declare("full", durable=True)
        second = publisher.publish([message])
        confirmed_on = publisher._held.connection
    finally:
        publisher.close()
    assert (first.nacked, first.confirmed) == ({"m-1"}, set())
    assert nacked_on is None  # closed after the nack
    assert (second.nacked, second.confirmed) == (set(), {"m-1"})
    assert confirmed_on is not None
    assert vhost.depth("full") == 1


def test_batch_publisher_confirms_every_message(vhost):
    publisher = BatchPublisher(vhost.amqp_uri)
    with Connection(vhost.amqp_uri) as connection:
        channel = connection.default_channel
        channel.exchange_declare("orders", "topic", durable=True)
        channel.queue_declare("q", durable=True)
        channel.queue_bind("q", "orders", "order.placed")
    messages = [{"exchange": "orders", "routing_key": "order.placed" if i % 50 else "nowhere",
                 "body": json.dumps({"i": i}), "message_id": f"m-{i}", "correlation_id": "c",
                 "type": "OrderPlaced"} for i in range(500)]
    try:
        outcome = publisher.publish(messages)
    finally:
        publisher.close()

    unroutable = {f"m-{i}" for i in range(0, 500, 50)}
    assert outcome.returned.keys() == unroutable
    assert outcome.confirmed == {m["message_id"] for m in messages} - unroutable
    assert outcome.nacked == set()
    # the batch went out as one socket write: every message arrives whole, in order
    arrived = vhost.take_messages("q")
    assert [(m["properties"]["message_id"], json.loads(m["body"])) for m in arrived] == [
        (f"m-{i}", {"i": i}) for i in range(500) if i % 50]
    assert {m["properties"]["delivery_mode"] for m in arrived} == {2}
