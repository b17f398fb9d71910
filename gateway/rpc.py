"""A thread-safe Nameko RPC client for a multi-threaded WSGI server.

nameko's standalone ``ClusterRpcProxy`` drains its reply queue from the calling thread, so one
proxy serves one call at a time and breaks when threads share it; a pool of proxies costs a
connection and a reply queue per proxy. :class:`RpcClient` instead keeps ONE reply queue,
consumed by one background thread, and lets any number of threads have calls in flight,
matched to their replies by correlation id.

The wire format is nameko 2.x's own (``nameko/rpc.py``): a request goes to the durable topic
exchange ``nameko-rpc`` with routing key ``<service>.<method>`` and the JSON body
``{"args": [], "kwargs": {...}}``; the service's ``Responder`` publishes the reply to the same
exchange with routing key = the request's ``reply_to``, so the reply queue is bound with its own
name as routing key.

Example::

    client = RpcClient("amqp://guest:guest@localhost:5672/", timeout=5)
    client.call("orders", "get_order", order_id="o-1")
    client["orders"].list_orders()
    client.close()
"""
import json
import logging
import queue
import socket
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from kombu import Connection, Consumer, Exchange, Producer, Queue
from nameko.exceptions import RemoteError, deserialize

from nameko_topology.exceptions import CONNECTION_ERRORS
from nameko_topology.uris import connect, redact

__all__ = [
    "RpcClient", "ServiceProxy", "RpcError", "ServiceUnavailable", "UnknownService",
    "RpcTimeout", "RemoteError",
]

log = logging.getLogger(__name__)

RPC_EXCHANGE_NAME = "nameko-rpc"  # nameko.rpc.get_rpc_exchange, unless config sets rpc_exchange
NON_PERSISTENT = 1


class RpcError(Exception):
    """Base class for failures of the RPC client itself (as opposed to remote errors)."""


class ServiceUnavailable(RpcError):
    """The call could not be completed: broker down, connection lost, or service absent."""


class UnknownService(ServiceUnavailable):
    """No queue is bound for ``<service>.<method>``: the broker returned the request."""


class RpcTimeout(ServiceUnavailable):
    """No reply within the timeout. The service may still execute (or have executed) the call."""


class ServiceProxy:
    """Sugar: ``client["orders"].place_order(item="x", quantity=1)``."""

    def __init__(self, client, service):
        self._client = client
        self._service = service

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(timeout=None, **kwargs):
            return self._client.call(self._service, method, timeout=timeout, **kwargs)
        return call


class _Publisher:
    """A confirm-mode channel on a connection of its own, used by one thread at a time.

    A py-amqp connection is not thread-safe (a confirm wait reads the shared socket), so each
    publishing thread checks a whole connection out of the client's small pool.
    """

    def __init__(self, connection):
        self.connection = connection
        self.returned = set()
        connect(connection)  # one attempt per node: fail fast, not kombu's 2 s retry
        channel = connection.channel()
        # With a basic_return listener py-amqp records a returned (unroutable) message instead
        # of raising out of the confirm wait; raising would leave that message's ack unread and
        # put every later confirm on this channel off by one.
        channel.events["basic_return"].add(self._on_return)
        self.producer = Producer(channel, auto_declare=False)

    def _on_return(self, exc, exchange, routing_key, message):
        self.returned.add(message.properties.get("correlation_id"))

    def publish(self, body, correlation_id, timeout, **properties):
        """Publish and wait for the broker's confirm; return False if the message was returned.

        RabbitMQ sends basic.return before the confirm, so once the confirm is in, a returned
        message has been recorded.
        """
        self.returned.clear()
        self.producer.publish(
            body, correlation_id=correlation_id, mandatory=True, timeout=timeout, retry=False,
            content_type="application/json", content_encoding="utf-8", **properties)
        return correlation_id not in self.returned

    def close(self, broken=False):
        try:
            # collect() drops the socket without the close handshake, which could block on a
            # dead peer.
            self.connection.collect() if broken else self.connection.release()
        except Exception:  # closing is best effort
            log.debug("error closing publisher connection", exc_info=True)


class RpcClient:
    """Thread-safe RPC client for nameko services; one reply queue, many calls in flight.

    :Parameters:
        amqp_uri: broker URI, e.g. ``amqp://guest:guest@localhost:5672/``.
        timeout: default seconds to wait for a reply (also bounds waiting for the broker).
        connect_timeout: seconds allowed for one connection attempt.
        max_publishers: connections used to publish requests concurrently.
        heartbeat: AMQP heartbeat of the reply consumer's connection, so that a dead broker
            is noticed even when no replies arrive.
        name: prefix of the reply queue (``rpc.reply-<name>-<uuid>``, a new uuid on each
            connection) and of connection names.
        exchange: nameko's RPC exchange (nameko config ``rpc_exchange``).

    Nothing connects until the first call (or :meth:`start`). Call :meth:`close` at shutdown.
    """

    def __init__(self, amqp_uri, timeout=5.0, connect_timeout=2.0, max_publishers=8,
                 heartbeat=30, name="gateway", exchange=RPC_EXCHANGE_NAME, observer=None):
        self.amqp_uri = amqp_uri
        #: ``observer(service, method, exc, seconds)`` after each call (exc None: it returned)
        self.observer = observer
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.id = uuid.uuid4().hex
        self.name = name
        self.reply_queue_name = self._new_reply_queue_name()
        self.exchange = Exchange(exchange, type="topic", durable=True)  # as nameko declares it

        # _cond guards the connection state and _pending; the consumer thread notifies it.
        self._cond = threading.Condition()
        self._pending = {}  # correlation_id -> Future resolved with the reply body
        self._ready = False  # the reply consumer is connected and consuming
        self._broker_error = None  # why the last connection attempt failed, if it did
        self._closed = False
        self._stopping = threading.Event()
        self._thread = None

        self._idle_publishers = queue.LifoQueue()  # LIFO: reuse the warmest connection
        self._publisher_slots = threading.BoundedSemaphore(max_publishers)

    def __getitem__(self, service):
        return ServiceProxy(self, service)

    def __repr__(self):
        return "<RpcClient {} {}>".format(self.reply_queue_name, redact(self.amqp_uri))

    @property
    def in_flight(self):
        """Number of calls waiting for a reply."""
        with self._cond:
            return len(self._pending)

    # lifecycle ---------------------------------------------------------------------------

    def start(self):
        """Start the reply consumer thread (idempotent; :meth:`call` does it lazily)."""
        with self._cond:
            if self._closed:
                raise ServiceUnavailable("RPC client is closed")
            if self._thread is None:
                # A plain daemon thread: the gateway must not be monkey-patched by eventlet.
                self._thread = threading.Thread(
                    target=self._consume_forever, name="rpc-replies-" + self.id[:8], daemon=True)
                self._thread.start()

    def close(self):
        """Stop the consumer, fail calls in flight and close all connections."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.connect_timeout + 2)
        self._fail_pending(ServiceUnavailable("RPC client closed"))
        self._discard_idle_publishers()

    def check_broker(self, timeout=1.0):
        """Raise :class:`ServiceUnavailable` unless the reply consumer is connected.

        Waits up to ``timeout`` seconds for a connection that is being (re)established.
        """
        self.start()
        self._wait_ready(timeout)

    # calls -------------------------------------------------------------------------------

    def call(self, service, method, timeout=None, **kwargs):
        """:meth:`_call`, reported to the observer (the gateway's metrics)."""
        if self.observer is None:
            return self._call(service, method, timeout=timeout, **kwargs)
        started = time.perf_counter()
        try:
            result = self._call(service, method, timeout=timeout, **kwargs)
        except Exception as exc:
            self.observer(service, method, exc, time.perf_counter() - started)
            raise
        self.observer(service, method, None, time.perf_counter() - started)
        return result

    def _call(self, service, method, timeout=None, context=None, **kwargs):
        """Call ``service.method(**kwargs)`` and return its result.

        ``context`` is the call's nameko context data (``{"correlation_id": ...}``), sent as
        ``nameko.``-prefixed headers: the service's worker has it as its context data.

        Raises :class:`UnknownService` at once if no queue is bound for the method,
        :class:`RpcTimeout` if no reply came within ``timeout`` (default: the client's),
        :class:`ServiceUnavailable` if the broker cannot be reached or the connection was lost
        while waiting, and nameko's ``RemoteError`` (with ``exc_type``) for an exception raised
        by the service. Safe to call from any number of threads.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        target = "{}.{}".format(service, method)
        # Serialize first so that a bad argument fails here, before anything is registered.
        body = json.dumps({"args": [], "kwargs": kwargs})
        correlation_id = str(uuid.uuid4())
        future = Future()

        self.start()
        with self._cond:
            self._wait_ready(timeout)
            # Registered under the same lock the consumer takes when it loses its connection,
            # so every registered call is either answered or failed by that sweep.
            self._pending[correlation_id] = future
        try:
            self._publish(target, body, correlation_id, deadline, context)
            try:
                reply = future.result(timeout=_remaining(deadline))
            except FutureTimeout:
                with self._cond:
                    self._pending.pop(correlation_id, None)
                if not future.done():  # a reply may have landed between timeout and pop
                    raise RpcTimeout("no reply from {} within {:g}s".format(target, timeout))
                reply = future.result()
        finally:
            with self._cond:  # a late reply then finds no entry and is discarded
                self._pending.pop(correlation_id, None)

        if not isinstance(reply, dict):
            raise RpcError("malformed reply from {}: {!r}".format(target, reply))
        if reply.get("error"):
            raise remote_error(reply["error"])
        return reply.get("result")

    def _wait_ready(self, timeout):
        """Wait until the reply consumer is connected; fail fast if the broker is known down."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._ready or self._broker_error or self._closed, timeout)
            if self._closed:
                raise ServiceUnavailable("RPC client is closed")
            if not self._ready:
                raise ServiceUnavailable("broker unavailable: {}".format(
                    self._broker_error or "not connected after {:g}s".format(timeout)))

    def _publish(self, target, body, correlation_id, deadline, context=None):
        headers = {f"nameko.{key}": value for key, value in (context or {}).items()}
        headers["nameko.call_id_stack"] = ["{}.call.{}".format(self.name, correlation_id)]
        if not self._publisher_slots.acquire(timeout=_remaining(deadline)):
            raise RpcTimeout("no free publisher connection for {}".format(target))
        try:
            for attempt in (1, 2):
                publisher = self._idle_publisher() if attempt == 1 else None
                reused = publisher is not None
                if publisher is None:
                    publisher = self._new_publisher()
                try:
                    routed = publisher.publish(
                        body, correlation_id, timeout=max(_remaining(deadline), 0.001),
                        exchange=self.exchange.name, routing_key=target,
                        reply_to=self.reply_queue_name,
                        # Transient, and dropped if still queued when the caller gives up: a
                        # request nobody waits for should not run later (e.g. once a stopped
                        # service comes back). Persistence would only slow the confirm.
                        delivery_mode=NON_PERSISTENT,
                        expiration=max(_remaining(deadline), 0.001),
                        headers=headers)
                except socket.timeout:  # OSError subclass; the confirm did not come in time
                    publisher.close(broken=True)
                    raise RpcTimeout("no publish confirm for {} in time".format(target))
                except Exception as exc:
                    publisher.close(broken=True)
                    # An idle pooled connection may have been closed by the broker meanwhile
                    # (that is when the failure shows): retry once on a fresh connection. The
                    # other idle ones most likely went the same way (broker restart).
                    if reused and isinstance(exc, CONNECTION_ERRORS):
                        log.info("publisher connection was stale (%r); reconnecting", exc)
                        self._discard_idle_publishers(broken=True)
                        continue
                    raise ServiceUnavailable("broker unavailable: {!r}".format(exc)) from exc
                self._release_publisher(publisher)
                if not routed:
                    raise UnknownService(
                        "no queue bound for {} (unknown service or not running)".format(target))
                return
        finally:
            self._publisher_slots.release()

    def _new_publisher(self):
        conn = self._connection("publisher", confirm_publish=True)
        try:
            return _Publisher(conn)
        except Exception as exc:
            conn.collect()
            raise ServiceUnavailable("broker unavailable: {!r}".format(exc)) from exc

    def _release_publisher(self, publisher):
        with self._cond:
            closed = self._closed
        if closed:
            publisher.close()
        else:
            self._idle_publishers.put(publisher)

    def _idle_publisher(self):
        try:
            return self._idle_publishers.get_nowait()
        except queue.Empty:
            return None

    def _discard_idle_publishers(self, broken=False):
        while True:
            publisher = self._idle_publisher()
            if publisher is None:
                return
            publisher.close(broken=broken)

    def _connection(self, role, heartbeat=0, **transport_options):
        # Named connections show up in the management UI, and tests cut them by name.
        name = "{}-{}-{}".format(self.name, self.id[:8], role)
        transport_options["client_properties"] = {"connection_name": name}
        return Connection(self.amqp_uri, connect_timeout=self.connect_timeout,
                          heartbeat=heartbeat, transport_options=transport_options)

    # reply consumer thread ---------------------------------------------------------------

    def _new_reply_queue_name(self):
        return "rpc.reply-{}-{}".format(self.name, uuid.uuid4().hex)

    def _consume_forever(self):
        """Own a connection, consume the reply queue, and reconnect forever until closed."""
        backoff = 0.0
        while not self._stopping.is_set():
            connected = False
            # A queue of its own name per connection: when a cluster node dies, the survivors
            # keep listing its exclusive queues for a while, and redeclaring the old name is
            # refused (RESOURCE_LOCKED) until they drop it. Calls sent to the old name were
            # failed when that connection was lost.
            with self._cond:
                self.reply_queue_name = self._new_reply_queue_name()
            conn = self._connection("consumer", heartbeat=self.heartbeat)
            try:
                connect(conn)
                # Exclusive + auto-delete: the broker drops the queue with our connection, so a
                # reconnect declares it afresh and nothing is left behind after a crash.
                reply_queue = Queue(
                    self.reply_queue_name, exchange=self.exchange,
                    routing_key=self.reply_queue_name, exclusive=True, auto_delete=True,
                    durable=False)
                with Consumer(conn, queues=[reply_queue], no_ack=True, accept=["json"],
                              callbacks=[self._on_reply], on_decode_error=self._on_bad_reply):
                    connected = True
                    self._set_connected()
                    backoff = 0.0
                    while not self._stopping.is_set():
                        try:
                            conn.drain_events(timeout=1)
                        except socket.timeout:
                            pass
                        # Also when replies keep coming: this connection sends nothing else,
                        # and the broker drops a connection whose heartbeats stop.
                        conn.heartbeat_check()
            except Exception as exc:
                if self._stopping.is_set():
                    break
                self._set_disconnected(exc, lost=connected)
            finally:
                # A clean close when stopping; after a failure the socket may be dead, and
                # the close handshake could block.
                _quietly(conn.release if self._stopping.is_set() else conn.collect)
            self._stopping.wait(backoff)
            backoff = min(max(backoff * 2, 0.2), 5.0)
        with self._cond:
            self._ready = False

    def _set_connected(self):
        with self._cond:
            self._ready, self._broker_error = True, None
            self._cond.notify_all()
        log.info("RPC reply consumer connected to %s", redact(self.amqp_uri))

    def _set_disconnected(self, exc, lost):
        with self._cond:
            first_failure = self._ready or self._broker_error is None
            self._ready = False
            if not lost:
                # Known down: calls fail at once instead of waiting out their timeout. After a
                # mere loss they wait for the reconnect, which normally takes a moment.
                self._broker_error = repr(exc)
            self._cond.notify_all()
        if lost:
            log.warning("RPC reply connection lost (%r); reconnecting", exc)
            self._fail_pending(ServiceUnavailable("connection to broker lost: {!r}".format(exc)))
            self._discard_idle_publishers(broken=True)  # likely dead too: not one by one
        else:
            log.log(logging.WARNING if first_failure else logging.DEBUG,
                    "cannot connect to broker %s: %r", redact(self.amqp_uri), exc)

    def _fail_pending(self, error):
        # Their replies would go to a queue that died with the connection: fail them now.
        with self._cond:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(error)

    def _on_reply(self, body, message):
        correlation_id = message.properties.get("correlation_id")
        with self._cond:
            future = self._pending.pop(correlation_id, None)
        if future is None:
            log.debug("discarding reply for unknown or timed-out call %s", correlation_id)
        else:
            future.set_result(body)

    def _on_bad_reply(self, message, exc):
        correlation_id = message.properties.get("correlation_id")
        with self._cond:
            future = self._pending.pop(correlation_id, None)
        log.warning("undecodable RPC reply %s: %r", correlation_id, exc)
        if future is not None:
            future.set_exception(RpcError("undecodable reply: {!r}".format(exc)))


# What a dead or closed connection raises (py-amqp, sockets, kombu's connect wrapper).


def remote_error(data):
    """The exception that a serialised nameko RPC error describes."""
    if not isinstance(data, dict):
        return RpcError("malformed error in reply: {!r}".format(data))
    exc = deserialize(data)
    if not hasattr(exc, "exc_type"):
        # nameko rebuilds its own registered exceptions (MethodNotFound, IncorrectSignature,
        # MalformedRequest) as instances; give them exc_type too, so callers check one thing.
        exc.exc_type = data.get("exc_type")
    return exc


def _remaining(deadline):
    return max(deadline - time.monotonic(), 0.0)


def _quietly(fn):
    try:
        fn()
    except Exception:
        pass
