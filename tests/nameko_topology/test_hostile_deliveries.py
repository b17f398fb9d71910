"""Hostile deliveries against a live ``@handle`` consumer: each is handled or dead-lettered with
its reason, and the consumer goes on (issue #11).

Each test runs a container in a virtual host of its own and publishes what a careless or
hostile client could, then a valid order, which must still be processed.
"""
import json
import struct
from pathlib import Path

import pytest
import yaml
from amqp.exceptions import AMQPError
from hypothesis import HealthCheck, Phase, given, settings
from kombu import Connection, Exchange, Producer, Queue
from nameko.rpc import rpc
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_hook, entrypoint_waiter

from nameko_topology import MessagePublisher, handle
from nameko_topology import rpc as topology_rpc
from nameko_topology.exceptions import MessageTooLarge
from nameko_topology.testing.broker import wait_for
from tests.nameko_topology.hostile import wire_deliveries

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"
VALID_ORDER = {"order_id": "o-1", "item": "widget-A", "quantity": 2}
FINAL_ORDER = {"order_id": "final", "item": "widget-A", "quantity": 1}

calls = []  # the payload of every handler call, returned or not


class Consumer:
    name = "hostile_consumer"

    @handle("order_placed_queue")
    def on_order_placed(self, order):
        calls.append(order)
        if order["item"] == "explode":
            raise RuntimeError("transient failure")
        if order["item"] == "overflow":
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        if order["item"] == "unencodable":
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")


class Publishing:
    name = "publishing"

    publish = MessagePublisher()

    @rpc
    def place(self, payload):
        return self.publish("OrderPlaced", payload)


class Echo:
    name = "echo"

    @topology_rpc
    def echo(self, value):
        return value


@pytest.fixture(autouse=True)
def clean_calls():
    calls.clear()


@pytest.fixture
def config(vhost):
    return {"AMQP_URI": vhost.amqp_uri, "TOPOLOGY_FILE": str(REPO_TOPOLOGY), "max_workers": 4}


def order(item="widget-A", **fields):
    return {**VALID_ORDER, "item": item, **fields}


def dead_letters_of(vhost, container, publishes):
    """Publish each ``(message_id, body, properties)`` of ``publishes``, then a valid order;
    return the dead letters by message id once every one of them is dead-lettered,
    after checking that the valid order was processed and the consumer is still there."""
    for message_id, body, properties in publishes:
        vhost.publish("orders", "order.placed", body, message_id=message_id, **properties)
    with entrypoint_waiter(container, "on_order_placed", timeout=20,
                           callback=lambda worker_ctx, result, exc_info: (
                               worker_ctx.args[0] == FINAL_ORDER)):
        vhost.publish("orders", "order.placed", FINAL_ORDER)
    wait_for(lambda: vhost.depth("dead_letter_queue") == len(publishes), timeout=20,
             description=f"{len(publishes)} dead letters")
    dead = vhost.take_messages("dead_letter_queue")
    assert container.started
    assert vhost.consumers("order_placed_queue") == 1
    assert vhost.depth("order_placed_queue") == 0
    return {m["properties"].get("message_id"): m for m in dead}


def reasons(dead):
    return {message_id: m["headers"].get("x-rejected-reason") for message_id, m in dead.items()}


BAD_HEADERS = {
    "table-exchange": ({"x-original-exchange": {"a": 1}},
                       "invalid message: header 'x-original-exchange' must be a string, not dict"),
    "int-routing-key": ({"x-original-routing-key": 42}, "invalid message: header "
                        "'x-original-routing-key' must be a string, not int"),
    "long-routing-key": ({"x-original-routing-key": "k" * 300}, "invalid message: header "
                         "'x-original-routing-key' is 300 bytes long; AMQP allows at most 255"),
    "str-call-stack": ({"nameko.call_id_stack": "svc.method.1"}, "invalid message: header "
                       "'nameko.call_id_stack' must be a list of strings, not str"),
    "mixed-call-stack": ({"nameko.call_id_stack": ["a", 1, {"b": 2}]}, "invalid message: header "
                         "'nameko.call_id_stack' must be a list of strings, not a list holding "
                         "dict, int, str"),
    "table-user-id": ({"nameko.user_id": {"a": 1}},
                      "invalid message: header 'nameko.user_id' must be a string, not dict"),
    "int-language": ({"nameko.language": 7},
                     "invalid message: header 'nameko.language' must be a string, not int"),
}


def test_a_header_of_the_wrong_type_is_dead_lettered_naming_it_and_consuming_goes_on(
        vhost, config, container_factory):
    container = container_factory(Consumer, config)
    container.start()

    dead = dead_letters_of(vhost, container, [
        (name, VALID_ORDER, {"headers": headers})
        for name, (headers, _) in BAD_HEADERS.items()])

    assert reasons(dead) == {name: reason for name, (_, reason) in BAD_HEADERS.items()}
    assert calls == [FINAL_ORDER]


def test_the_dead_letter_log_line_names_the_message_id_or_says_there_is_none(
        vhost, config, container_factory, caplog):
    container = container_factory(Consumer, config)
    container.start()
    headers, reason = BAD_HEADERS["int-language"]

    dead = dead_letters_of(vhost, container, [
        (None, VALID_ORDER, {"headers": headers}), ("with-id", VALID_ORDER, {"headers": headers})])

    # a dead letter of a message without an id gets its dead-letter id as its message_id
    without_id = next(m for message_id, m in dead.items() if message_id != "with-id")
    assert without_id["properties"]["message_id"] == without_id["headers"]["x-dead-letter-id"]
    assert {m["headers"]["x-rejected-reason"] for m in dead.values()} == {reason}
    assert len(dead) == 2
    lines = [record.getMessage().split(": ", 1)[1] for record in caplog.records
             if "dead-lettering" in record.getMessage()]
    assert sorted(lines) == sorted([f"dead-lettering a message without a message_id: {reason}",
                                    f"dead-lettering message 'with-id': {reason}"])


def test_a_correlation_id_longer_than_the_outbox_stores_is_dead_lettered(
        vhost, config, container_factory):
    container = container_factory(Consumer, config)
    container.start()

    dead = dead_letters_of(vhost, container, [
        ("long-correlation", VALID_ORDER, {"correlation_id": "c" * 250})])

    assert reasons(dead) == {"long-correlation": "invalid message: property 'correlation_id' is "
                                                 "250 characters long; at most 200 are allowed"}


def test_an_empty_body_and_a_long_routing_key_header_are_dead_lettered_with_their_reasons(
        vhost, config, container_factory):
    container = container_factory(Consumer, config)
    container.start()

    dead = dead_letters_of(vhost, container, [
        ("empty", b"", {"content_type": "application/json"}),
        ("empty-binary", b"", {"content_type": "application/json",
                               "content_encoding": "binary"}),
        ("long-key", VALID_ORDER, {"headers": {"x-original-routing-key": "k" * 300}}),
    ])

    assert reasons(dead) == {
        "empty": "invalid message: body is not valid JSON: JSONDecodeError: Expecting value: "
                 "line 1 column 1 (char 0)",
        "empty-binary": "invalid message: body is not valid JSON: JSONDecodeError: Expecting "
                        "value: line 1 column 1 (char 0)",
        "long-key": BAD_HEADERS["long-routing-key"][1],
    }
    assert [dead[name]["body"] for name in ("empty", "empty-binary", "long-key")] == [
        b"", b"", json.dumps(VALID_ORDER).encode()]


def topology_with(tmp_path, queue, section="queues", **options):
    """A copy of the repository's topology.yaml with ``options`` added to the entry of
    ``section`` called ``queue``."""
    document = yaml.safe_load(REPO_TOPOLOGY.read_text())
    for spec in document[section]:
        if spec["name"] == queue:
            spec.update(options)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def padded(payload, size):
    """``payload`` as JSON of exactly ``size`` bytes (spaces before the closing brace)."""
    body = json.dumps(payload).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize("limit, configured, per_queue", [
    (1000, 1000, None), (1048576, None, None), (500, 1000, 500),
], ids=["configured", "default-1-MiB", "the-queue's-max_message_bytes-first"])
def test_a_body_over_max_message_bytes_is_dead_lettered_unread(
        vhost, config, container_factory, tmp_path, limit, configured, per_queue):
    if configured:
        config = {**config, "MAX_MESSAGE_BYTES": configured}
    if per_queue:
        config = {**config, "TOPOLOGY_FILE": str(topology_with(
            tmp_path, "order_placed_queue", max_message_bytes=per_queue))}
    container = container_factory(Consumer, config)
    container.start()

    with entrypoint_waiter(container, "on_order_placed", timeout=20):
        vhost.publish("orders", "order.placed", padded(VALID_ORDER, limit),
                      content_type="application/json")
    dead = dead_letters_of(vhost, container, [
        ("over-limit", padded(VALID_ORDER, limit + 1), {"content_type": "application/json"})])

    assert reasons(dead) == {"over-limit": f"invalid message: body of {limit + 1} bytes is over "
                                           f"the limit of {limit} bytes (MAX_MESSAGE_BYTES); "
                                           f"the body is dropped"}
    assert dead["over-limit"]["body"] == b""
    assert calls == [VALID_ORDER, FINAL_ORDER]


def test_the_publisher_refuses_a_message_over_max_message_bytes(
        vhost, config, container_factory):
    container = container_factory(Publishing, {**config, "MAX_MESSAGE_BYTES": 100})
    container.start()

    with entrypoint_hook(container, "place") as place:
        with pytest.raises(MessageTooLarge, match=(
                r"OrderPlaced: a body of 141 bytes is over the limit of 100 bytes "
                r"\(MAX_MESSAGE_BYTES\)")):
            place(order(item="x" * 100))
        place(VALID_ORDER)  # 49 bytes

    [sent] = vhost.take_messages("order_placed_queue")
    assert json.loads(sent["body"]) == VALID_ORDER


def test_other_charsets_encodings_and_content_types_are_dead_lettered(
        vhost, config, container_factory):
    container = container_factory(Consumer, config)
    container.start()
    body = json.dumps(VALID_ORDER).encode()

    dead = dead_letters_of(vhost, container, [
        ("latin-1", body, {"content_type": "application/json; charset=latin-1"}),
        ("gzip", body, {"content_type": "application/json", "content_encoding": "gzip"}),
        ("xml", body, {"content_type": "application/xml"}),
    ])

    assert reasons(dead) == {
        "latin-1": "invalid message: unsupported charset in content type "
                   "'application/json; charset=latin-1'; JSON bodies are UTF-8",
        "gzip": "invalid message: unsupported content encoding 'gzip'; expected one of utf-8, "
                "utf8, binary",
        "xml": "invalid message: unsupported content type 'application/xml'; expected "
               "application/json",
    }


def test_json_content_types_with_parameters_are_handled(vhost, config, container_factory):
    container = container_factory(Consumer, config)
    container.start()
    body = json.dumps(VALID_ORDER).encode()

    for content_type, content_encoding in [("application/json; charset=utf-8", None),
                                           ("Application/JSON; Charset=\"UTF-8\"", None),
                                           ("application/json", "utf-8")]:
        with entrypoint_waiter(container, "on_order_placed", timeout=10):
            vhost.publish("orders", "order.placed", body, content_type=content_type,
                          content_encoding=content_encoding)

    assert calls == [VALID_ORDER] * 3
    assert vhost.depth("dead_letter_queue") == 0


@pytest.mark.parametrize("item, error", [
    ("overflow", "OverflowError: Python int too large to convert to SQLite INTEGER"),
    ("unencodable", "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in "
                    "position 0: surrogates not allowed"),
])
def test_an_error_retrying_cannot_fix_is_dead_lettered_at_once(
        vhost, config, container_factory, item, error):
    container = container_factory(Consumer, config)
    container.start()

    dead = dead_letters_of(vhost, container, [("permanent", order(item), {})])

    assert reasons(dead) == {"permanent": error}
    assert calls == [order(item), FINAL_ORDER]  # one attempt


def test_values_the_message_shapes_refuse_are_dead_lettered(vhost, config, container_factory):
    container = container_factory(Consumer, config)
    container.start()

    dead = dead_letters_of(vhost, container, [
        ("huge-quantity", order(quantity=2 ** 63), {}),
        ("crlf-id", order(order_id="x\r\nSet-Cookie: a=b"), {}),
        ("newline-id", order(order_id="x\n"), {}),
        ("slash-id", order(order_id="a/b"), {}),
        ("surrogate", order(item="probe-\ud800"), {}),  # json.dumps sends it as "\ud800"
    ])

    assert reasons(dead) == {
        "huge-quantity": "invalid message: OrderPlaced: field 'quantity': 9223372036854775808 "
                         "is greater than the maximum of 1000000",
        "crlf-id": "invalid message: OrderPlaced: field 'order_id': 'x\\r\\nSet-Cookie: a=b' "
                   "does not match the pattern '^[A-Za-z0-9][A-Za-z0-9._:-]*$'",
        "newline-id": "invalid message: OrderPlaced: field 'order_id': 'x\\n' does not match "
                      "the pattern '^[A-Za-z0-9][A-Za-z0-9._:-]*$'",
        "slash-id": "invalid message: OrderPlaced: field 'order_id': 'a/b' does not match the "
                    "pattern '^[A-Za-z0-9][A-Za-z0-9._:-]*$'",
        "surrogate": "invalid message: OrderPlaced: field 'item': holds a lone surrogate, a "
                     "string no encoding can store",
    }
    assert calls == [FINAL_ORDER]


def test_fields_a_message_type_forbids_are_dead_lettered_naming_them(
        vhost, config, container_factory, tmp_path):
    config = {**config, "TOPOLOGY_FILE": str(topology_with(
        tmp_path, "OrderPlaced", section="messages", additional_fields=False))}
    container = container_factory(Consumer, config)
    container.start()

    dead = dead_letters_of(vhost, container, [
        ("colour", order(colour="red"), {}),
        ("long-name", order(**{"x" * 2000: 1}), {}),
    ])

    colour = reasons(dead)["colour"]
    assert colour.startswith("invalid message: OrderPlaced: ")
    assert colour.endswith("fields the message type does not declare: 'colour'")
    # a field name longer than a reason header may be still leaves a bounded reason
    assert reasons(dead)["long-name"].startswith("invalid message: OrderPlaced: ")
    assert len(reasons(dead)["long-name"]) <= 1000
    assert json.loads(dead["colour"]["body"]) == order(colour="red")
    assert calls == [FINAL_ORDER]


@pytest.mark.parametrize("attempt, shown", [
    (10 ** 9, "x-attempt 1000000000 is out of range 1..3"),
    (0, "x-attempt 0 is out of range 1..3"),
    ("2", "x-attempt '2' is not an integer"),
    (True, "x-attempt True is not an integer"),
])
def test_a_malformed_attempt_header_counts_as_the_last_attempt(
        vhost, config, container_factory, attempt, shown):
    container = container_factory(Consumer, config)
    container.start()

    dead = dead_letters_of(vhost, container, [
        ("bad-attempt", order("explode"), {"headers": {"x-attempt": attempt}})])

    assert reasons(dead) == {"bad-attempt": f"{shown}: taken as the last attempt; handler "
                                            f"failed: RuntimeError: transient failure"}
    assert calls == [order("explode"), FINAL_ORDER]  # no retry


def test_a_valid_message_with_a_malformed_attempt_header_is_handled(
        vhost, config, container_factory):
    container = container_factory(Consumer, config)
    container.start()

    with entrypoint_waiter(container, "on_order_placed", timeout=10):
        vhost.publish("orders", "order.placed", VALID_ORDER, headers={"x-attempt": 10 ** 9})

    assert calls == [VALID_ORDER]
    wait_for(lambda: vhost.acked("order_placed_queue") == 1, timeout=20,
             description="the message acked")
    assert vhost.depth("dead_letter_queue") == 0


class FuzzPublisher:
    """Publishes generated deliveries on one confirmed channel, counting those the broker took
    (py-amqp refuses to encode some, and the broker may close the channel on others)."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.connection = None
        self.published = 0

    def publish(self, delivery):
        body, properties, headers, exchange, routing_key = delivery
        if self.connection is None:
            self.connection = Connection(self.amqp_uri,
                                         transport_options={"confirm_publish": True})
            self.producer = Producer(self.connection.channel())
        properties = {"content_type": "application/octet-stream", **properties}
        if (exchange, routing_key) != ("orders", "order.placed"):
            # straight into the queue, through the default exchange: it arrives with a route
            # no message type is declared for
            exchange, routing_key = "", "order_placed_queue"
        try:
            self.producer.publish(
                body, exchange=Exchange(exchange, no_declare=True) if exchange else "",
                routing_key=routing_key, headers=headers, delivery_mode=2, retry=False,
                message_id=f"fuzz-{self.published}", **properties)
        except (AMQPError, OSError, ValueError, TypeError, OverflowError, struct.error):
            # not sent: py-amqp cannot encode it (a header name over 255 bytes, an integer
            # beyond 64 bits...), or the broker refused it and closed the channel
            self.close()
            return
        self.published += 1

    def close(self):
        if self.connection is not None:
            self.connection.release()
            self.connection = None


def test_hundreds_of_generated_deliveries_are_each_handled_or_dead_lettered_with_a_reason(
        vhost, config, container_factory):
    container = container_factory(Consumer, {**config, "MAX_MESSAGE_BYTES": 2048})
    container.start()
    publisher = FuzzPublisher(vhost.amqp_uri)

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(wire_deliveries())
    def publish(delivery):
        publisher.publish(delivery)

    publish()
    publisher.close()
    with entrypoint_waiter(container, "on_order_placed", timeout=30,
                           callback=lambda worker_ctx, result, exc_info: (
                               worker_ctx.args[0] == FINAL_ORDER)):
        vhost.publish("orders", "order.placed", FINAL_ORDER)

    published = publisher.published
    assert published >= 200
    wait_for(lambda: len(calls) - 1 + vhost.depth("dead_letter_queue") == published,
             timeout=30, description=f"all {published} fuzz deliveries settled")
    dead = vhost.take_messages("dead_letter_queue")
    assert all(m["headers"].get("x-rejected-reason") for m in dead)
    assert len({m["properties"]["message_id"] for m in dead}) == len(dead)
    assert len(calls) - 1 + len(dead) == published
    assert 0 < len(dead) < published  # some of each
    assert container.started
    assert vhost.consumers("order_placed_queue") == 1
    assert vhost.depth("order_placed_queue") == 0


def test_an_rpc_request_without_a_reply_to_is_dropped_and_rpc_goes_on(
        vhost, config, container_factory):
    container = container_factory(Echo, config)
    container.start()

    # nameko's responder raised KeyError('reply_to') here, which killed the container
    vhost.publish("nameko-rpc", "echo.echo", {"args": ["nobody asks"], "kwargs": {}},
                  correlation_id="probe-no-reply-to")

    wait_for(lambda: vhost.depth("rpc-echo") == 0, timeout=10,
             description="the request delivered")
    with ClusterRpcProxy(config, timeout=10) as proxy:  # a dead container never answers
        assert proxy.echo.echo("still here") == "still here"
    assert container.started
    assert vhost.consumers("rpc-echo") == 1


def test_an_rpc_request_with_a_bad_context_header_gets_an_error_reply_and_rpc_goes_on(
        vhost, config, container_factory):
    container = container_factory(Echo, config)
    container.start()
    with Connection(vhost.amqp_uri) as connection:  # where the replies to our request go
        Queue("probe_replies", Exchange("nameko-rpc", type="topic", durable=True, no_declare=True),
              routing_key="probe_replies")(connection.default_channel).declare()

    vhost.publish("nameko-rpc", "echo.echo", {"args": ["hello"], "kwargs": {}},
                  reply_to="probe_replies", correlation_id="probe-1",
                  headers={"nameko.call_id_stack": 5})

    [reply] = wait_for(lambda: vhost.take_messages("probe_replies"), timeout=10,
                       description="the error reply")
    assert reply["properties"]["correlation_id"] == "probe-1"
    error = json.loads(reply["body"])["error"]
    assert (error["exc_type"], error["value"]) == (
        "InvalidMessage", "header 'nameko.call_id_stack' must be a list of strings, not int")
    with ClusterRpcProxy(config) as proxy:
        assert proxy.echo.echo("still here") == "still here"
    assert container.started
