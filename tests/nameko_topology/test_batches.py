"""Batch ``@handle`` entrypoints without a broker: how deliveries are grouped into batches, and
what a batch's outcome does to each of its messages (a container that runs workers at once)."""
import sys
from unittest.mock import Mock

import pytest
from nameko.exceptions import ContainerBeingKilled

from nameko_topology import Handle, PermanentError
from nameko_topology.batching import CoalescedDeliveries
from nameko_topology.metrics import QueueMetrics
from nameko_topology.model import QueueSpec


class Spawner:
    """Records the functions handed to it instead of running them: the next turn of the loop."""

    def __init__(self):
        self.spawned = []

    def __call__(self, fn):
        self.spawned.append(fn)


def test_the_deliveries_of_one_turn_are_flushed_once_in_batches_of_at_most_size():
    spawn, batches = Spawner(), []
    deliveries = CoalescedDeliveries(2, spawn=spawn, handle=batches.append)
    for tag in range(1, 6):
        deliveries.add(tag)

    [flush] = spawn.spawned
    flush()

    assert batches == [[1, 2], [3, 4], [5]]


def test_deliveries_that_arrive_while_a_batch_is_handed_out_join_the_same_flush():
    spawn, batches = Spawner(), []

    def handle(batch):  # a full worker pool: the consumer reads on while the flush waits
        batches.append(batch)
        if len(batches) == 1:
            deliveries.add(3)

    deliveries = CoalescedDeliveries(10, spawn=spawn, handle=handle)
    deliveries.add(1)
    deliveries.add(2)
    spawn.spawned[0]()

    assert batches == [[1, 2], [3]]
    assert len(spawn.spawned) == 1


def test_a_delivery_after_a_flush_schedules_the_next_one():
    spawn, batches = Spawner(), []
    deliveries = CoalescedDeliveries(10, spawn=spawn, handle=batches.append)
    deliveries.add(1)
    spawn.spawned[0]()
    deliveries.add(2)
    spawn.spawned[1]()

    assert batches == [[1], [2]]


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        Handle("order_placed_queue", batch_size=0)


class ImmediateContainer:
    """Runs managed threads and workers at once, as nameko would, calling ``handler``."""

    def __init__(self, handler):
        self.handler = handler
        self.calls = []  # (args, context_data) of each worker

    def spawn_managed_thread(self, fn, identifier=None):
        fn()

    def spawn_worker(self, entrypoint, args, kwargs, context_data=None, handle_result=None):
        self.calls.append((args[0], context_data))
        result = exc_info = None
        try:
            result = self.handler(*args)
        except Exception:
            exc_info = sys.exc_info()
        worker_ctx = WorkerContextStandIn()
        handle_result(worker_ctx, result, exc_info)
        return worker_ctx


class WorkerContextStandIn:
    """What ``spawn_worker`` returns, as nameko's does: the worker's context."""


def message(order_id, correlation_id=None):
    return Mock(payload={"order_id": order_id}, headers={},
                properties={"correlation_id": correlation_id})


def entrypoint_with(handler, batch_size=10):
    """A batch Handle bound to an ImmediateContainer; bodies decode to ``message.payload``."""
    entrypoint = Handle("order_placed_queue", batch_size=batch_size)
    entrypoint.container = ImmediateContainer(handler)
    entrypoint.queue_spec = QueueSpec("order_placed_queue")
    entrypoint.queue_consumer = Mock()
    entrypoint.decode = lambda message: message.payload
    entrypoint.dead_letter = Mock()
    entrypoint.metrics = QueueMetrics("test", "order_placed_queue")
    return entrypoint


def assert_dead_lettered_once(entrypoint, message, reason):
    """``message`` alone was dead-lettered, with ``reason``, on its first attempt."""
    entrypoint.dead_letter.assert_called_once()
    (dead, dead_reason), kwargs = entrypoint.dead_letter.call_args
    assert (dead, dead_reason, kwargs["attempt"]) == (message, reason, 1)
    assert isinstance(kwargs["exc"], PermanentError)


def acked(entrypoint):
    return [call.args[0] for call in entrypoint.queue_consumer.ack_message.call_args_list]


def test_a_batch_that_returns_acks_each_of_its_messages():
    entrypoint = entrypoint_with(handler=lambda orders: None)
    messages = [message("o-1"), message("o-2")]

    entrypoint.handle_messages(messages)

    assert entrypoint.container.calls == [([{"order_id": "o-1"}, {"order_id": "o-2"}], {})]
    assert acked(entrypoint) == messages


def test_a_failed_batch_runs_each_message_alone_and_only_the_poison_one_is_dead_lettered():
    def handler(orders):
        if any(order["order_id"] == "poison" for order in orders):
            raise PermanentError("never")

    entrypoint = entrypoint_with(handler)
    good, poison, other = message("o-1"), message("poison", "corr-p"), message("o-2")

    entrypoint.handle_messages([good, poison, other])

    assert [args for args, _ in entrypoint.container.calls] == [
        [{"order_id": "o-1"}, {"order_id": "poison"}, {"order_id": "o-2"}],
        [{"order_id": "o-1"}], [{"order_id": "poison"}], [{"order_id": "o-2"}]]
    # a batch has no one message's context; a message alone has its own
    (_, batch_context), _, (_, poison_context), _ = entrypoint.container.calls
    assert (batch_context, poison_context) == ({}, {"correlation_id": "corr-p"})
    assert acked(entrypoint) == [good, other]
    assert_dead_lettered_once(entrypoint, poison, "PermanentError: never")


def test_a_lone_message_that_fails_is_not_run_again():
    def handler(orders):
        raise PermanentError("never")

    entrypoint = entrypoint_with(handler)
    [poison] = messages = [message("poison")]

    entrypoint.handle_messages(messages)

    assert len(entrypoint.container.calls) == 1
    assert_dead_lettered_once(entrypoint, poison, "PermanentError: never")


def test_a_batch_refused_by_a_dying_container_is_requeued_whole():
    entrypoint = entrypoint_with(handler=lambda orders: None)
    entrypoint.container.spawn_worker = Mock(side_effect=ContainerBeingKilled)
    messages = [message("o-1"), message("o-2")]

    entrypoint.handle_messages(messages)

    assert [call.args[0] for call in entrypoint.queue_consumer.requeue_message.call_args_list] == (
        messages)
