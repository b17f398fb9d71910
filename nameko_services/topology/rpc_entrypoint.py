"""``@rpc``: nameko's RPC entrypoint, surviving a broker that goes away during a call.

nameko 2.14 sends an RPC reply from the worker's result handling; if the broker connection is
gone by then (a broker restart, a closed connection), the publish error escapes and kills the
whole container. Here the lost reply is logged instead: the request was never acked, so the
broker redelivers it once the connection is back, while the caller's wait ends in its timeout
(or in the reply of the redelivered request). RPC methods must therefore be safe to run twice,
as ``place_order`` is with its order id.
"""
import logging

from nameko import rpc as nameko_rpc

from nameko_services.topology.consumer import CONNECTION_ERRORS, ResilientQueueConsumer

log = logging.getLogger(__name__)


class RpcConsumer(nameko_rpc.RpcConsumer):
    """The container's RPC queue consumer; a reply lost with the connection is not fatal."""

    queue_consumer = ResilientQueueConsumer()

    def handle_result(self, message, result, exc_info):
        try:
            return super().handle_result(message, result, exc_info)
        except CONNECTION_ERRORS as exc:
            log.warning("could not reply to %s (correlation id %s): %s; the broker redelivers "
                        "the request", message.delivery_info.get("routing_key"),
                        message.properties.get("correlation_id"), exc)
            return result, exc_info


class Rpc(nameko_rpc.Rpc):
    """``@rpc`` for topology services: nameko's, with :class:`RpcConsumer` behind it."""

    rpc_consumer = RpcConsumer()


rpc = Rpc.decorator
