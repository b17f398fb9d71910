"""The gateway's CallBatcher against a scripted RPC client: coalescing, per-call outcomes."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from nameko.exceptions import RemoteError

from gateway.batcher import CallBatcher
from gateway.rpc import RpcError, RpcTimeout, ServiceUnavailable
from nameko_topology.testing import wait_for

WAIT = 5  # seconds any condition here may take at most


class ScriptedRpc:
    """Answers place_orders by echoing each order, or as ``answer(orders)`` says; records
    batches; holds every call while ``gate`` is closed."""

    def __init__(self, answer=None):
        self.batches = []
        self.answer = answer or (lambda orders: [{"order": order} for order in orders])
        self.gate = threading.Event()
        self.gate.set()

    def call(self, service, method, timeout=None, **kwargs):
        assert (service, method) == ("orders", "place_orders") and timeout > 0
        self.batches.append(kwargs["orders"])
        assert self.gate.wait(WAIT)
        answer = self.answer(kwargs["orders"])
        if isinstance(answer, Exception):
            raise answer
        return answer


def batcher(rpc, **options):
    return CallBatcher(rpc, "orders", "place_orders", argument="orders", result_key="order",
                       **options)



def second_of_three_calls_fails(rpc):
    """Make three calls that reach ``rpc`` together; the first and the third get their
    results; return the ``RemoteError`` the second one raised."""
    calls = batcher(rpc, senders=1)
    rpc.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(calls.call, 3, n=n) for n in range(3)]
        wait_for(lambda: sum(len(batch) for batch in rpc.batches) + len(calls._queue) == 3,
                 timeout=WAIT)
        rpc.gate.set()
        assert futures[0].result(WAIT) == {"n": 0}
        with pytest.raises(RemoteError) as failed:
            futures[1].result(WAIT)
        assert futures[2].result(WAIT) == {"n": 2}
    return failed.value

def test_a_lone_call_goes_out_alone_and_gets_its_result():
    rpc = ScriptedRpc()
    assert batcher(rpc).call(3, item="a", quantity=1) == {"item": "a", "quantity": 1}
    assert rpc.batches == [[{"item": "a", "quantity": 1}]]


def test_calls_that_arrive_while_a_batch_is_in_flight_go_out_together():
    rpc = ScriptedRpc()
    calls = batcher(rpc, senders=1, max_batch=4)
    rpc.gate.clear()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(calls.call, 3, n=0)
        wait_for(lambda: len(rpc.batches) == 1, timeout=WAIT)
        rest = [pool.submit(calls.call, 3, n=n) for n in range(1, 7)]
        wait_for(lambda: len(calls._queue) == 6, timeout=WAIT)
        rpc.gate.set()
        results = [first.result(WAIT)] + [future.result(WAIT) for future in rest]

    assert results == [{"n": n} for n in range(7)]
    # the six that queued behind the first: one full batch, then the rest
    assert [len(batch) for batch in rpc.batches] == [1, 4, 2]


def test_each_call_gets_its_own_entry_error_or_result():
    rpc = ScriptedRpc(lambda orders: [
        {"error": {"exc_type": "OrderConflict", "value": "taken"}} if order["n"] == 1
        else {"order": order} for order in orders])
    conflict = second_of_three_calls_fails(rpc)
    assert (conflict.exc_type, conflict.value) == ("OrderConflict", "taken")


@pytest.mark.parametrize("answer, error", [
    (ServiceUnavailable("broker unavailable"), ServiceUnavailable),
    (RpcTimeout("no reply"), RpcTimeout),
    ([], RpcError),                   # not one entry per call
    ([{"nothing": 1}], RpcError),     # an entry with neither result nor error
])
def test_a_failed_or_malformed_batch_fails_its_calls(answer, error):
    calls = batcher(ScriptedRpc(lambda orders: answer))
    with pytest.raises(error):
        calls.call(3, n=0)


def test_a_call_left_in_the_queue_past_its_timeout_is_refused_not_sent():
    rpc = ScriptedRpc()
    calls = batcher(rpc, senders=1)
    rpc.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(calls.call, 3, n=0)
        wait_for(lambda: len(rpc.batches) == 1, timeout=WAIT)
        with pytest.raises(RpcTimeout):
            calls.call(0.05, n=1)  # the only sender is busy for longer than that
        rpc.gate.set()
        assert blocker.result(WAIT) == {"n": 0}
    wait_for(lambda: not calls._queue, timeout=WAIT)
    assert rpc.batches == [[{"n": 0}]]


def test_a_closed_batcher_refuses_calls():
    calls = batcher(ScriptedRpc())
    calls.close()
    with pytest.raises(RpcError, match="closed"):
        calls.call(3, n=0)


def test_a_batch_the_service_raises_for_is_sent_again_call_by_call():
    # one call the service cannot handle must not fail the calls batched with it
    def answer(orders):
        if any(order["n"] == 1 for order in orders):
            return RemoteError("UnicodeEncodeError", "surrogates not allowed")
        return [{"order": order} for order in orders]

    rpc = ScriptedRpc(answer)
    assert second_of_three_calls_fails(rpc).exc_type == "UnicodeEncodeError"
    # the batch that failed went out again, call by call
    [failed_batch] = [batch for batch in rpc.batches if len(batch) > 1]
    assert rpc.batches[-len(failed_batch):] == [[call] for call in failed_batch]
