"""correlation_id_of: the id a worker's messages carry, its own or a batch payload's."""
from types import SimpleNamespace

import pytest

from nameko_topology.correlation import correlation_id_of, usable
from nameko_topology.handle import Delivery
from nameko_topology.messages import MAX_CORRELATION_ID_LENGTH


class Worker:
    """A worker context: its data, and the deliveries its entrypoint hands it."""

    def __init__(self, data=None, deliveries=()):
        self.data = data or {}
        self.entrypoint = SimpleNamespace(deliveries_of=lambda worker_ctx: deliveries)


def delivery(payload, correlation_id):
    return Delivery(SimpleNamespace(properties={"correlation_id": correlation_id}), payload)


def test_without_a_cause_it_is_the_workers_own():
    assert correlation_id_of(Worker({"correlation_id": "call-1"})) == "call-1"
    assert correlation_id_of(Worker()) is None


def test_each_payload_of_a_batch_has_its_messages():
    first, second, twin = {"order_id": "1"}, {"order_id": "2"}, {"order_id": "1"}
    worker = Worker(deliveries=[delivery(first, "req-1"), delivery(second, "req-2"),
                                delivery(twin, "req-3")])
    assert correlation_id_of(worker, second) == "req-2"
    assert correlation_id_of(worker, first) == "req-1"
    # found by identity: an equal payload of another message keeps its own
    assert correlation_id_of(worker, twin) == "req-3"


def test_a_payload_the_worker_did_not_receive_is_refused():
    worker = Worker(deliveries=[delivery({"order_id": "1"}, "req-1")])
    with pytest.raises(ValueError, match="cause must be a payload"):
        correlation_id_of(worker, {"order_id": "1"})
    with pytest.raises(ValueError):
        # an entrypoint that hands out no deliveries: an RPC worker's
        correlation_id_of(Worker(), {"order_id": "1"})


@pytest.mark.parametrize("hostile", [
    "x" * (MAX_CORRELATION_ID_LENGTH + 1), 12, b"bytes", ["list"], "", None])
def test_an_id_that_cannot_be_sent_and_stored_is_not_used(hostile):
    assert usable(hostile) is None
    payload = {"order_id": "1"}
    worker = Worker({"correlation_id": hostile}, deliveries=[delivery(payload, hostile)])
    assert correlation_id_of(worker) is None and correlation_id_of(worker, payload) is None
