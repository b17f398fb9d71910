"""Shared pieces of the fault tests: stacks, an order stream that retries like a real client, and
waiting for the pipeline to finish.

The root conftest monkey-patches eventlet, so the "threads" here are green threads: they run
while the test waits (``wait_for`` sleeps cooperatively).
"""
import json
import threading
import time
import uuid

import pytest
import requests

from scripts.stack import GATEWAY, Stack, tail
from tests.conftest import FAILED
from nameko_topology.testing.broker import wait_for

# every queue of topology.yaml that the pipeline consumes, and the dead letters
PIPELINE_QUEUES = ("order_placed_queue", "inventory_reserved_queue", "inventory_failed_queue",
                   "order_status_reserved_queue", "order_status_failed_queue")
DEAD_LETTER_QUEUE = "dead_letter_queue"

LAST_FILE = "test_broker_restart.py"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Run the broker restart tests after everything else in the session: they take the whole
    broker away, not just a vhost."""
    last = [item for item in items if item.path.name == LAST_FILE
            and item.path.parent.name == "faults"]
    if last:
        items[:] = [item for item in items if item not in last] + last


# -- stacks ----------------------------------------------------------------------------------

@pytest.fixture
def make_stack(request, vhost, tmp_path):
    """``make_stack(env, data_dir=None)``: a started Stack in the test's vhost; all stopped at
    teardown. If the test failed, the tail of every log is printed (pytest shows it)."""
    stacks = []

    def make(env, data_dir=None, start_timeout=90):
        stack = Stack(vhost.amqp_uri, data_dir or tmp_path / "data",
                      env={"MAX_WORKERS": "10", **{k: str(v) for k, v in env.items()}})
        stacks.append(stack)
        stack.start(timeout=start_timeout)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
    if request.node.stash.get(FAILED, False):
        for stack in stacks[-1:]:
            for log in sorted(stack.log_dir.glob("*.log")):
                print(f"--- last lines of {log}:\n{tail(log, 30)}")


class ProcessWatch:
    """Fails fast, naming the process and showing its log, when a process of ``stack`` that
    should be running has exited (rather than letting a wait run into its timeout)."""

    def __init__(self, stack):
        self.stack = stack
        self.names = set(stack.services) | {GATEWAY} | set(stack.pids())

    def check(self):
        running = self.stack.pids()
        for name in sorted(self.names - set(running)):
            log = self.stack.log_path(name)
            raise AssertionError(f"{name} is no longer running; last lines of {log}:\n"
                                 f"{tail(log, 60)}")


# -- the gateway, as a client sees it -----------------------------------------------------

class Pipeline:
    """Reads the pipeline's state over HTTP."""

    def __init__(self, url, stack=None):
        self.url = url
        self.session = requests.Session()
        self.stack = stack  # if given, waits fail as soon as one of its processes has exited

    def get(self, path, timeout=10):
        response = self.session.get(f"{self.url}{path}", timeout=timeout)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def try_get(self, path, timeout=10):
        """The body of GET ``path``, or None while the gateway or a service is unavailable."""
        try:
            response = self.session.get(f"{self.url}{path}", timeout=timeout)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def count(self, path):
        """len() of a list resource, 0 while it is unavailable (for wait_for conditions)."""
        return len(self.try_get(path) or [])

    def snapshot(self):
        return {path: self.get(path)
                for path in ("/orders", "/inventory", "/processed", "/notifications")}

    def wait_completed(self, n, timeout=180):
        """Wait until ``n`` orders have gone all the way through: each one settled
        (not PENDING), n processed by inventory, n notices. Returns a snapshot.

        Waits for *at least* n of each, so that a surplus shows up as a failed exact-count
        assertion in the test rather than as a timeout here."""
        watch = ProcessWatch(self.stack) if self.stack is not None else None

        def done():
            if watch is not None:
                watch.check()
            orders = self.try_get("/orders")
            if orders is None or len(orders) < n or any(o["status"] == "PENDING"
                                                        for o in orders):
                return False
            return self.count("/processed") >= n and self.count("/notifications") >= n
        try:
            wait_for(done, timeout=timeout, interval=0.5,
                     description=f"{n} orders through the whole pipeline")
        except AssertionError as exc:
            orders = self.try_get("/orders") or []
            pending = sum(1 for o in orders if o["status"] == "PENDING")
            raise AssertionError(
                f"{exc}; now: {len(orders)} orders ({pending} PENDING), "
                f"{self.count('/processed')} processed, "
                f"{self.count('/notifications')} notifications") from None
        return self.snapshot()


class StockWatch:
    """Reads GET /inventory every 0.1 s, in a thread and an HTTP session of its own, until
    :meth:`stop`, which returns every stock level of ``item`` seen: an oversell shows as one
    below 0."""

    def __init__(self, url, item):
        self.reader = Pipeline(url)
        self.item = item
        self.seen = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _watch(self):
        while not self._stopping.is_set():
            inventory = self.reader.try_get("/inventory")
            if inventory is not None:
                self.seen.append(inventory[self.item])
            self._stopping.wait(0.1)

    def stop(self):
        self._stopping.set()
        self._thread.join(10)
        return self.seen


class OrderStream:
    """POST ``n`` orders from ``clients`` threads, as a well-behaved client does: every order
    has an Idempotency-Key of its own and is retried with that same key, on 503 or a failed
    connection, until it gets its 202. ``result()`` returns the order ids, in order.

        stream = OrderStream(url, 300).start()
        wait_for(lambda: stream.accepted >= 100)
        ...                                  # a fault, mid-stream
        order_ids = stream.result()
    """

    RETRYABLE = (502, 503, 504)

    def __init__(self, url, n, clients=4, item="widget-A", quantity=1, deadline=240,
                 retry_interval=0.2, pause=0.0, stack=None):
        self.url = url
        # if given, a refused POST first checks that none of its processes has exited
        self.watch = ProcessWatch(stack) if stack is not None else None
        self.n = n
        self.clients = clients
        self.item, self.quantity = item, quantity
        self.deadline = deadline
        self.retry_interval = retry_interval
        self.pause = pause  # each client's think time between two orders: paces the stream
        self.keys = [f"fault-{uuid.uuid4().hex}" for _ in range(n)]
        self.order_ids = [None] * n
        self.retries = 0                 # failed attempts that were retried
        self.failures = {}               # status or exception name -> how many
        self.errors = []                 # what ended a client thread early
        self._next = 0
        self._lock = threading.Lock()
        self._threads = []

    @property
    def accepted(self):
        """Orders that got their 202 so far."""
        return sum(1 for order_id in self.order_ids if order_id is not None)

    def start(self):
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, name=f"order-client-{i}",
                                          daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def _take(self):
        with self._lock:
            if self._next >= self.n or self.errors:
                return None
            self._next += 1
            return self._next - 1

    def _client(self):
        session = requests.Session()
        try:
            while (index := self._take()) is not None:
                self.order_ids[index] = self._place(session, index)
                if self.pause:
                    time.sleep(self.pause)
        except Exception as exc:  # reported by result()
            with self._lock:
                self.errors.append(exc)

    def _place(self, session, index):
        body = {"item": self.item, "quantity": self.quantity}
        headers = {"Idempotency-Key": self.keys[index]}
        while True:
            if time.monotonic() - self._started > self.deadline:
                raise AssertionError(f"order {index} not accepted within {self.deadline}s "
                                     f"(failed attempts so far: {self.failures})")
            try:
                response = session.post(f"{self.url}/order", json=body, headers=headers,
                                        timeout=15)
            except requests.RequestException as exc:  # gateway restarting, reset, timed out
                failure = type(exc).__name__
                session = requests.Session()
            else:
                if response.status_code == 202:
                    order = response.json()
                    assert (order["item"], order["quantity"]) == (self.item, self.quantity), order
                    return order["order_id"]
                if response.status_code not in self.RETRYABLE:
                    raise AssertionError(f"POST /order answered {response.status_code}: "
                                         f"{response.text}")
                failure = response.status_code
            with self._lock:
                self.retries += 1
                self.failures[failure] = self.failures.get(failure, 0) + 1
            if self.watch is not None:
                self.watch.check()
            time.sleep(self.retry_interval)  # a client's back-off, not a synchronisation

    def result(self, timeout=None):
        """Wait for every order's 202; return the order ids (fails on any other answer)."""
        timeout = self.deadline + 30 if timeout is None else timeout
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        if self.errors:
            raise self.errors[0]
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"order clients still running after {timeout}s: {alive}"
        assert None not in self.order_ids, "orders without a 202"
        return list(self.order_ids)


def stream_orders(url, n, clients=4, **kwargs):
    """Place ``n`` orders (see OrderStream) and return their ids once all are accepted."""
    return OrderStream(url, n, clients, **kwargs).start().result()


# -- assertions shared by the tests ----------------------------------------------------------

def assert_each_order_once(snapshot, order_ids, item, initial_stock):
    """Exactly the orders placed, each processed and notified once, each confirmed, stock
    taken once per order."""
    n = len(order_ids)
    assert len(set(order_ids)) == n, "the gateway returned the same order for two keys"
    orders = snapshot["/orders"]
    assert len(orders) == n, f"{len(orders)} orders stored for {n} placed"
    assert sorted(o["order_id"] for o in orders) == sorted(order_ids)
    statuses = {}
    for order in orders:
        statuses[order["status"]] = statuses.get(order["status"], 0) + 1
    assert statuses == {"CONFIRMED": n}, statuses
    processed = snapshot["/processed"]
    assert len(processed) == n, f"{len(processed)} processed ids for {n} orders"
    assert sorted(processed) == sorted(order_ids)
    assert snapshot["/inventory"][item] == initial_stock - n
    notifications = snapshot["/notifications"]
    assert len(notifications) == n, f"{len(notifications)} notifications for {n} orders"
    assert sorted(x["order_id"] for x in notifications) == sorted(order_ids)
    assert {x["kind"] for x in notifications} == {"confirmation"}


def assert_recovered(pipeline, vhost, order_ids, item, initial_stock):
    """After a fault: every order completed exactly once (see assert_each_order_once), every
    consumer back on its queue, every queue drained."""
    snapshot = pipeline.wait_completed(len(order_ids))
    assert_each_order_once(snapshot, order_ids, item, initial_stock)
    assert {q: vhost.consumers(q) for q in PIPELINE_QUEUES} == dict.fromkeys(PIPELINE_QUEUES, 1)
    assert_queues_drained(vhost)


def assert_queues_drained(vhost, timeout=30):
    """Nothing left waiting in any queue, and nothing dead-lettered.

    Waits (bounded) for the queues to empty: a redelivered or re-published duplicate may still
    be on its way to being consumed, and dropped, after the pipeline has completed."""
    queues = PIPELINE_QUEUES + (DEAD_LETTER_QUEUE,)
    depths = {}

    def empty():
        depths.update((queue, vhost.depth(queue)) for queue in queues)
        return not any(depths.values())
    try:
        wait_for(empty, timeout=timeout, interval=0.2, description="every queue empty")
    except AssertionError:
        raise AssertionError(f"messages left in queues: {depths}") from None


def stock_env(stock):
    return {"INITIAL_STOCK": json.dumps(stock)}
