"""The ``MessagePublisher`` dependency: publish a topology message type, confirmed."""
from nameko.amqp.publish import Publisher as PublisherCore
from nameko.extensions import DependencyProvider
from nameko.messaging import HeaderEncoder

from nameko_topology.constants import AMQP_URI_CONFIG_KEY
from nameko_topology.correlation import correlation_id_of
from nameko_topology.declarer import TopologyDeclarer
from nameko_topology.messages import max_message_bytes, outgoing


class MessagePublisher(DependencyProvider, HeaderEncoder):
    """Injects ``publish(message_type, payload, message_id=None, correlation_id=None)``.

    The exchange and routing key come from the message type in ``topology.yaml``; the payload
    is checked against the type's fields before anything is sent. Messages are persistent,
    published with confirms and ``mandatory``: an unroutable message raises
    ``nameko.amqp.publish.UndeliverableMessage`` instead of vanishing. A payload whose body
    would be over ``MAX_MESSAGE_BYTES`` raises ``MessageTooLarge`` (an ``InvalidMessage``).
    The correlation id defaults to the one of the message or call being handled.

    Publishing straight from a handler is not atomic with the handler's database work; use
    :class:`~nameko_topology.outbox.Outbox` where that matters.

    Example::

        class Orders:
            publish = MessagePublisher()

            @rpc
            def place(self, item):
                self.publish("OrderPlaced", {"order_id": ..., "item": item, "quantity": 1})
    """

    declarer = TopologyDeclarer()

    def setup(self):
        self.publisher = PublisherCore(
            self.container.config[AMQP_URI_CONFIG_KEY], use_confirms=True, mandatory=True)
        self.max_message_bytes = max_message_bytes(self.container.config)

    def get_dependency(self, worker_ctx):
        topology = self.declarer.topology
        headers = self.get_message_headers(worker_ctx)

        def publish(message_type, payload, message_id=None, correlation_id=None):
            message = outgoing(
                topology.message(message_type), payload, message_id=message_id,
                correlation_id=correlation_id or correlation_id_of(worker_ctx),
                max_bytes=self.max_message_bytes,
            )
            self.publisher.publish(message.pop("body"), headers=headers, **message)
            return message["message_id"]

        return publish
