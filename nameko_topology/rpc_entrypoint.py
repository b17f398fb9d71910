"""``@rpc``: nameko's RPC entrypoint, surviving a broker that goes away during a call, with
cheaper replies.

nameko 2.14 sends an RPC reply from the worker's result handling; if the broker connection is
gone by then (a broker restart, a closed connection), the publish error escapes and kills the
whole container. Here the lost reply is logged instead: the request was never acked, so the
broker redelivers it once the connection is back, while the caller's wait ends in its timeout
(or in the reply of the redelivered request). RPC methods must therefore be safe to run twice,
as ``place_order`` is with its order id.

A request whose nameko context headers have the wrong type (``nameko.call_id_stack`` not a list
of strings) would raise inside nameko's worker set-up and kill the container too; it gets an
error reply naming the header instead.
"""
import logging
import sys

import kombu.serialization
from eventlet.semaphore import Semaphore
from nameko import rpc as nameko_rpc
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, LOGIN_METHOD_CONFIG_KEY,
    NON_PERSISTENT, SERIALIZER_CONFIG_KEY,
)

from nameko_topology.batch import HeldChannel
from nameko_topology.compat import Responder
from nameko_topology.constants import (
    DEFAULT_RPC_QUEUE_TYPE, RPC_QUEUE_TYPE_CONFIG_KEY, RPC_QUEUE_TYPES,
)
from nameko_topology.delivery import check_headers, shown
from nameko_topology.exceptions import CONNECTION_ERRORS, InvalidMessage
from nameko_topology.gcfreeze import GcFreeze
from nameko_topology.metrics import MetricsServer, RpcMetrics
from nameko_topology.queue_consumer import ResilientQueueConsumer

log = logging.getLogger(__name__)


class ReplyPublisher:
    """Publishes a container's RPC replies over one held channel: transient and unconfirmed.

    nameko builds a publisher per reply, which takes a connection from kombu's pool and wraps
    the publish in kombu's retry machinery: more CPU than the reply itself. Here the workers
    of a container take turns on one channel.

    A reply goes to the caller's exclusive reply queue, which dies with the caller's
    connection, so persisting it buys nothing; and a confirm would only tell us that a reply
    nobody can act on was lost, at the price of a broker round trip per call. A lost reply
    costs the caller a timeout, and its retry (same order id) finds the first call's result.
    """

    def __init__(self, amqp_uri, ssl=None, login_method=None):
        self._held = HeldChannel(amqp_uri, ssl=ssl, login_method=login_method)
        self._lock = Semaphore(1)  # a publish is several socket writes: one worker at a time

    def publish(self, payload, serializer, exchange, routing_key, correlation_id):
        """Publish ``payload``, serialised with ``serializer``; raises a connection error if
        the broker cannot be reached (a connection found broken is reopened once first)."""
        content_type, content_encoding, body = kombu.serialization.dumps(payload, serializer)
        with self._lock:
            for attempt in (1, 2):
                try:
                    channel = self._held.get()
                    channel.basic_publish(
                        channel.prepare_message(
                            body, content_type=content_type, content_encoding=content_encoding,
                            properties={"correlation_id": correlation_id,
                                        "delivery_mode": NON_PERSISTENT}),
                        exchange=exchange.name, routing_key=routing_key)
                    return
                except CONNECTION_ERRORS:
                    self._held.close()
                    if attempt == 2:
                        raise  # the broker itself is gone, not just our connection

    def close(self):
        with self._lock:
            self._held.close()


class RpcConsumer(nameko_rpc.RpcConsumer):
    """The container's RPC queue consumer; a reply lost with the connection is not fatal."""

    queue_consumer = ResilientQueueConsumer()

    def setup(self):
        super().setup()
        config = self.container.config
        queue_type = config.get(RPC_QUEUE_TYPE_CONFIG_KEY) or DEFAULT_RPC_QUEUE_TYPE
        if queue_type not in RPC_QUEUE_TYPES:
            raise ValueError(f"config {RPC_QUEUE_TYPE_CONFIG_KEY} must be one of "
                             f"{', '.join(RPC_QUEUE_TYPES)}, got {queue_type!r}")
        if queue_type != DEFAULT_RPC_QUEUE_TYPE:
            self.queue.queue_arguments = {"x-queue-type": queue_type}
        self.reply_publisher = ReplyPublisher(
            config[AMQP_URI_CONFIG_KEY], ssl=config.get(AMQP_SSL_CONFIG_KEY),
            login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        # fixed by the config: built once, not for every reply as nameko does
        self.reply_exchange = nameko_rpc.get_rpc_exchange(config)
        self.serializer = config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER)

    def stop(self):
        super().stop()
        self.reply_publisher.close()

    def handle_message(self, body, message):
        reply_to = message.properties.get("reply_to")
        if not (isinstance(reply_to, str) and reply_to):
            # nameko's responder would raise a KeyError building the reply and kill the
            # container, and the request, unacked, would kill every restart: there is no one
            # to answer, so the request is dropped (the RPC queue has no dead-letter exchange)
            log.warning("dropping an RPC request to %s without a reply_to (correlation id %s)",
                        shown(message.delivery_info.get("routing_key")),
                        shown(message.properties.get("correlation_id")))
            self.queue_consumer.reject_message(message)
            return
        try:
            check_headers(message.headers)
        except InvalidMessage:
            self.handle_result(message, None, sys.exc_info())  # the caller's RemoteError
            return
        super().handle_message(body, message)

    def handle_result(self, message, result, exc_info):
        responder = Responder(self.reply_publisher, self.reply_exchange, self.serializer, message)
        try:
            result, exc_info = responder.send_response(result, exc_info)
        except CONNECTION_ERRORS as exc:
            log.warning("could not reply to %s (correlation id %s): %s; the broker redelivers "
                        "the request", message.delivery_info.get("routing_key"),
                        message.properties.get("correlation_id"), exc)
            return result, exc_info
        self.queue_consumer.ack_message(message)
        return result, exc_info


class Rpc(nameko_rpc.Rpc):
    """``@rpc`` for topology services: nameko's, with :class:`RpcConsumer` behind it."""

    rpc_consumer = RpcConsumer()
    gc_freeze = GcFreeze()
    metrics_server = MetricsServer()

    def setup(self):
        super().setup()
        self.metrics = RpcMetrics(self.container.service_name, self.method_name)

    def handle_message(self, body, message):
        self.metrics.started(message)
        try:
            super().handle_message(body, message)
        except BaseException:  # refused before a worker ran (bad arguments): no call to time
            self.metrics.dropped(message)
            raise

    def handle_result(self, message, worker_ctx, result, exc_info):
        self.metrics.finished(message)
        return super().handle_result(message, worker_ctx, result, exc_info)


def rpc(*args, **kwargs):
    """Decorate a service method as an :class:`Rpc` entrypoint: ``@rpc``, or
    ``@rpc(expected_exceptions=...)`` as with nameko's own."""
    return Rpc.decorator(*args, **kwargs)
