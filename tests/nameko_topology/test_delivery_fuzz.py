"""The consumer's decode and settle path against arbitrary deliveries, without a broker.

A ``Handle`` gets fake messages (any body, content type, encoding, headers and properties, of
any Python type) and a republisher that encodes each publish as py-amqp would put it on the
wire, raising where py-amqp would. Each delivery must end up handed to the handler or
dead-lettered with a reason, acked once, and nothing may raise.
"""
import sys
from pathlib import Path
from unittest.mock import Mock

from amqp.basic_message import Message
from amqp.serialization import dumps
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nameko.containers import WorkerContext
from nameko.messaging import HeaderEncoder

from nameko_topology import Handle
from nameko_topology.messages import ATTEMPT_HEADER, REASON_HEADER
from nameko_topology.metrics import QueueMetrics
from nameko_topology.model import load_topology
from tests.nameko_topology.hostile import (
    READ_HEADERS, any_text, wire_deliveries, wire_values,
)

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "topology.yaml")
MAX_MESSAGE_BYTES = 2048

# Python values no broker would deliver, under the names the framework and nameko read
odd_values = st.one_of(wire_values, st.just(10 ** 5000), st.sets(st.integers(), max_size=2),
                       st.builds(object), st.tuples(st.integers()))
odd_names = st.one_of(st.integers(), st.binary(max_size=5), st.none(), st.tuples(st.integers()))


class FakeMessage:
    """What the consumer reads of a kombu message."""

    def __init__(self, body, properties, headers, delivery_info):
        self.body = body
        self.properties = properties
        self.content_type = properties.get("content_type")
        self.content_encoding = properties.get("content_encoding")
        self.headers = headers
        self.delivery_info = delivery_info
        self.delivery_tag = 1
        self.channel = Mock()


class WireRepublisher:
    """Encodes each publish as py-amqp sends it (basic.publish arguments, then the content
    header's properties and headers), so that it fails where the broker connection would."""

    def __init__(self):
        self.published = []

    def publish(self, body, exchange, routing_key, headers, content_type, content_encoding,
                mandatory, **properties):
        assert isinstance(body, bytes)  # kombu would encode a str, with content_encoding
        dumps("Bssbb", (0, exchange, routing_key, mandatory, False))
        sent = {"content_type": content_type, "content_encoding": content_encoding,
                "application_headers": headers, "delivery_mode": 2, **properties}
        present = [(key, kind) for key, kind in Message.PROPERTIES if sent.get(key) is not None]
        dumps("".join(kind for _, kind in present), [sent[key] for key, _ in present])
        self.published.append(headers)


class Container:
    """Runs workers at once, through nameko's own WorkerContext and header encoding."""

    service_name = "fuzz"
    config = {}

    def __init__(self, outcome):
        self.outcome = outcome
        self.handled = []

    def spawn_managed_thread(self, fn, identifier=None):
        fn()

    def spawn_worker(self, entrypoint, args, kwargs, context_data=None, handle_result=None):
        worker_ctx = WorkerContext(self, None, entrypoint, args, kwargs, data=context_data)
        # what nameko would copy into every message the worker sends
        dumps("F", [HeaderEncoder().get_message_headers(worker_ctx)])
        self.handled.append(args[0])
        exc_info = None
        try:
            if self.outcome is not None:
                raise self.outcome
        except Exception:
            exc_info = sys.exc_info()
        handle_result(worker_ctx, None, exc_info)
        return worker_ctx  # as nameko's does


def entrypoint_with(outcome):
    entrypoint = Handle("order_placed_queue")
    entrypoint.container = Container(outcome)
    entrypoint.method_name = "on_order_placed"
    entrypoint.topology = TOPOLOGY
    entrypoint.queue_spec = TOPOLOGY.queue("order_placed_queue")
    entrypoint.max_message_bytes = MAX_MESSAGE_BYTES
    entrypoint.republisher = WireRepublisher()
    entrypoint.queue_consumer = Mock()
    entrypoint.batches = None
    entrypoint.metrics = QueueMetrics("test", "order_placed_queue")
    return entrypoint


@st.composite
def deliveries(draw):
    body, properties, headers, exchange, routing_key = draw(wire_deliveries())
    delivery_info = {"exchange": exchange, "routing_key": routing_key}
    # then up to two parts of the wrong Python type altogether
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        part = draw(st.sampled_from(
            ["body", "headers", "header", "property", "delivery_info"]))
        if part == "body":
            body = draw(st.one_of(any_text, odd_values))
        elif part == "headers":
            headers = draw(odd_values)
        elif part == "header":
            headers = dict(headers) if isinstance(headers, dict) else {}
            headers[draw(st.sampled_from(READ_HEADERS) | odd_names)] = draw(odd_values)
        elif part == "property":
            properties = {**properties, draw(st.sampled_from(
                ["correlation_id", "message_id", "content_type", "content_encoding",
                 "timestamp", "type", "app_id"])): draw(odd_values)}
        else:
            delivery_info = {**delivery_info,
                             draw(st.sampled_from(["exchange", "routing_key"])): draw(odd_values)}
    return FakeMessage(body, properties, headers or draw(st.sampled_from([None, {}])),
                       delivery_info)


outcomes = st.sampled_from([None, RuntimeError("transient"), OverflowError("int too big"),
                            UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates")])


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=deliveries(), outcome=outcomes)
def test_every_delivery_is_handled_or_dead_lettered_with_a_reason(message, outcome):
    entrypoint = entrypoint_with(outcome)

    entrypoint.handle_messages([message])  # raises nothing

    consumer = entrypoint.queue_consumer
    assert not consumer.reject_message.called, "a republish failed"
    assert not consumer.requeue_message.called
    consumer.ack_message.assert_called_once_with(message)
    published = entrypoint.republisher.published
    handled = entrypoint.container.handled
    if handled and outcome is None:
        event("handled")
        assert published == []
    else:
        [headers] = published
        if isinstance(outcome, RuntimeError) and handled and REASON_HEADER not in headers:
            assert headers[ATTEMPT_HEADER] in (2, 3)  # a retry, within the attempts
            event("retried")
        else:
            assert isinstance(headers[REASON_HEADER], str) and headers[REASON_HEADER]
            event("dead-lettered: " + ":".join(headers[REASON_HEADER].split(":")[:2])[:70])
