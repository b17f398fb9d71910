"""Coalescing concurrent RPC calls of one method into calls of its batch method.

Each ``POST /order`` is one ``orders.place_order`` call: one request and one reply on the broker,
one nameko worker and one database commit in the orders service. Under load many arrive at
once, and calling ``orders.place_orders`` with all of them costs about what one call costs.
:class:`CallBatcher` does that: a request thread queues its arguments and waits; a few sender
threads each take everything queued (up to ``max_batch``), make one call, and hand each waiting
thread its own entry of the reply. With no load a call goes out alone, at once; the more calls
wait, the larger the next batch, so batching adds no delay that a queue would not have anyway.
"""
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from gateway.rpc import RemoteError, RpcError, RpcTimeout, remote_error

__all__ = ["CallBatcher"]

log = logging.getLogger(__name__)


class CallBatcher:
    """Sends the calls queued by :meth:`call` as batches of ``service.batch_method``.

    :Parameters:
        rpc: the RPC client (anything with ``call(service, method, timeout=None, **kwargs)``).
        service, batch_method: the batch method, called as ``batch_method(<argument>=[kwargs,
            ...])``, returning one entry per call: ``{"<result_key>": value}`` or
            ``{"error": <a serialised exception>}``.
        argument, result_key: the names of the batch method's list argument and of the
            result in each entry.
        max_batch: most calls in one batch.
        senders: batches in flight at once (one thread each).
        observe_batch: ``observe_batch(size)`` before each batch is sent (the metrics).
    """

    def __init__(self, rpc, service, batch_method, argument, result_key, max_batch=100,
                 senders=2, observe_batch=None):
        self.rpc = rpc
        self.service = service
        self.batch_method = batch_method
        self.argument = argument
        self.result_key = result_key
        self.max_batch = max_batch
        self.senders = senders
        self.observe_batch = observe_batch
        self._queue = deque()  # (kwargs, deadline, Future) of calls not sent yet
        self._cond = threading.Condition()
        self._threads = []
        self._closed = False

    def call(self, timeout, **kwargs):
        """The batch entry of this call: its result, or the exception it is refused with.

        Raises what the whole batch failed with (e.g. :class:`~gateway.rpc.ServiceUnavailable`)
        and :class:`~gateway.rpc.RpcTimeout` when the call could not be answered in
        ``timeout`` seconds.
        """
        future = Future()
        with self._cond:
            if self._closed:
                raise RpcError("batcher is closed")
            if not self._threads:
                self._start_senders()
            self._queue.append((kwargs, time.monotonic() + timeout, future))
            self._cond.notify()
        try:
            # the sender gives each batch the earliest deadline of its calls: this only waits
            # longer if the sender itself is stuck
            return future.result(timeout=timeout + 1)
        except FutureTimeout:
            raise RpcTimeout("no reply from {}.{} within {:g}s".format(
                self.service, self.batch_method, timeout)) from None

    def close(self):
        """Stop the senders; calls still queued fail."""
        with self._cond:
            self._closed = True
            queued, self._queue = list(self._queue), deque()
            self._cond.notify_all()
        for _, _, future in queued:
            future.set_exception(RpcError("batcher is closed"))

    def _start_senders(self):
        for number in range(self.senders):
            thread = threading.Thread(target=self._send_forever, daemon=True,
                                      name="batch-{}-{}".format(self.batch_method, number))
            thread.start()
            self._threads.append(thread)

    def _send_forever(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                batch = [self._queue.popleft()
                         for _ in range(min(self.max_batch, len(self._queue)))]
            self._send(batch)

    def _send(self, batch):
        now = time.monotonic()
        live = []
        for kwargs, deadline, future in batch:
            if deadline <= now:  # waited its whole timeout in the queue
                future.set_exception(RpcTimeout("no free sender for {}.{} in time".format(
                    self.service, self.batch_method)))
            else:
                live.append((kwargs, deadline, future))
        if live:
            self._send_alive(live)

    def _send_alive(self, live):
        """Send the calls of ``live`` as one batch and settle each one's future."""
        try:
            entries = self._call(live)
        except RemoteError as exc:
            if len(live) == 1:
                live[0][2].set_exception(exc)
                return
            # The service raised for the batch as a whole, maybe because of one call in it.
            # Alone, each call gets its own answer: only the one at fault fails.
            log.warning("%s.%s failed for a batch of %d (%s: %s); sending each call alone",
                        self.service, self.batch_method, len(live), exc.exc_type, exc.value)
            for call in live:
                self._send_alive([call])
            return
        except Exception as exc:  # the whole batch failed (broker, timeout): so did each call
            for _, _, future in live:
                future.set_exception(exc)
            return
        self._settle(live, entries)

    def _call(self, live):
        """The batch method's entries for the calls of ``live``, one per call."""
        timeout = min(deadline for _, deadline, _ in live) - time.monotonic()
        if self.observe_batch is not None:
            self.observe_batch(len(live))
        entries = self.rpc.call(self.service, self.batch_method, timeout=max(timeout, 0.001),
                                **{self.argument: [kwargs for kwargs, _, _ in live]})
        if not isinstance(entries, list) or len(entries) != len(live):
            raise RpcError("malformed reply from {}.{}: {} entries for {} calls".format(
                self.service, self.batch_method,
                len(entries) if isinstance(entries, list) else repr(entries), len(live)))
        return entries

    def _settle(self, live, entries):
        """Give each call of ``live`` its entry of the reply: its result or its error."""
        for (_, _, future), entry in zip(live, entries):
            if isinstance(entry, dict) and "error" in entry:
                future.set_exception(remote_error(entry["error"]))
            elif isinstance(entry, dict) and self.result_key in entry:
                future.set_result(entry[self.result_key])
            else:
                future.set_exception(RpcError("malformed entry in reply from {}.{}: {!r}".format(
                    self.service, self.batch_method, entry)))
