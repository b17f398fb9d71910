"""Tracing through the real pipeline: with a file exporter per process, one order's spans share
one trace id and form one tree across the four processes."""
import json
import uuid

import pytest
import requests

from nameko_topology.testing.broker import wait_for
from scripts.stack import GATEWAY, SERVICES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def traced_stack(pipeline, tmp_path_factory):
    """The pipeline, each process writing its spans to a file of its own."""
    directory = tmp_path_factory.mktemp("spans")
    return pipeline("tracing", env={"TRACING": f"file:{directory}/{{service}}.spans.jsonl"}), \
        directory


def spans_of(directory, trace_id):
    """Every span of ``trace_id`` written by the four processes, by span id."""
    spans = {}
    for name in (*SERVICES, GATEWAY):
        path = directory / f"{name}.spans.jsonl"
        for line in path.read_text().splitlines() if path.exists() else ():
            span = json.loads(line)
            if span["context"]["trace_id"] == "0x" + trace_id:
                spans[span["context"]["span_id"]] = {**span, "process": name}
    return spans


def test_one_order_makes_one_trace_across_the_four_processes(traced_stack):
    stack, directory = traced_stack
    trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    response = requests.post(stack.url + "/order", json={"item": "widget-A", "quantity": 1},
                             headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
                             timeout=15)
    assert response.status_code == 202
    order_id = response.json()["order_id"]
    wait_for(lambda: any(notice["order_id"] == order_id for notice in requests.get(
        stack.url + "/notifications", timeout=10).json()), description="the notification")

    chain = [
        (GATEWAY, "POST /order", "SpanKind.SERVER"),
        (GATEWAY, "orders.place_order", "SpanKind.CLIENT"),
        ("orders", "publish orders", "SpanKind.PRODUCER"),
        ("inventory", "process order_placed_queue", "SpanKind.CONSUMER"),
        ("inventory", "publish inventory", "SpanKind.PRODUCER"),
        ("notifications", "process inventory_reserved_queue", "SpanKind.CONSUMER"),
    ]

    def the_chain():
        spans = spans_of(directory, trace_id)
        leaves = [span for span in spans.values()
                  if (span["process"], span["name"]) == chain[-1][:2]]
        return (spans, leaves[0]) if leaves else None
    spans, span = wait_for(the_chain, timeout=30, description="the notification's span")
    # from the last span up to the client's, each span's parent is the one before it
    walked = []
    while span is not None:
        walked.append((span["process"], span["name"], span["kind"]))
        parent = span["parent_id"]
        span = spans.get(parent)
    assert parent == "0x" + client_span  # the root's parent: the client's own span
    assert list(reversed(walked)) == chain
    publish = next(span for span in spans.values() if span["name"] == "publish orders")
    assert publish["attributes"] == {
        "messaging.system": "rabbitmq", "messaging.operation.type": "publish",
        "messaging.destination.name": "orders",
        "messaging.rabbitmq.destination.routing_key": "order.placed",
        "messaging.message.id": publish["attributes"]["messaging.message.id"],
        "messaging.message.conversation_id": response.headers["X-Request-ID"],
    }
    consume = next(span for span in spans.values()
                   if span["name"] == "process order_placed_queue")
    assert consume["attributes"]["messaging.operation.type"] == "process"
    assert consume["attributes"]["messaging.destination.name"] == "orders"
    assert consume["resource"]["attributes"]["service.name"] == "inventory"
