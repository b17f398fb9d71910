"""``@rpc``: nameko's RPC entrypoint, surviving a broker that goes away during a call, with
cheaper replies.

nameko 2.14 sends an RPC reply from the worker's result handling; if the broker connection is
gone by then (a broker restart, a closed connection), the publish error escapes and kills the
whole container. Here the lost reply is logged instead: the request was never acked, so the
broker redelivers it once the connection is back, while the caller's wait ends in its timeout
(or in the reply of the redelivered request). RPC methods must therefore be safe to run twice,
as ``place_order`` is with its order id.
"""
import logging

from nameko import rpc as nameko_rpc
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, LOGIN_METHOD_CONFIG_KEY,
    NON_PERSISTENT, SERIALIZER_CONFIG_KEY,
)

from nameko_services.topology.consumer import CONNECTION_ERRORS, ResilientQueueConsumer

log = logging.getLogger(__name__)


class ReplyPublisher(Publisher):
    """Publishes RPC replies: transient and unconfirmed.

    A reply goes to the caller's exclusive reply queue, which dies with the caller's
    connection, so persisting it buys nothing; and a confirm would only tell us that a reply
    nobody can act on was lost, at the price of a broker round trip per call. A lost reply
    costs the caller a timeout, and its retry (same order id) finds the first call's result.
    """

    use_confirms = False
    delivery_mode = NON_PERSISTENT


class Responder(nameko_rpc.Responder):
    publisher_cls = ReplyPublisher


class RpcConsumer(nameko_rpc.RpcConsumer):
    """The container's RPC queue consumer; a reply lost with the connection is not fatal."""

    queue_consumer = ResilientQueueConsumer()

    def handle_result(self, message, result, exc_info):
        config = self.container.config
        responder = Responder(
            config[AMQP_URI_CONFIG_KEY], nameko_rpc.get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
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


rpc = Rpc.decorator
