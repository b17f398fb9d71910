"""The queue consumers behind the framework's entrypoints: nameko's, surviving a connection
lost under an ack, and the one of ``@handle`` (raw deliveries, topology re-declared on every
connect, its own prefetch, coalesced acks)."""
import logging
from functools import partial

from nameko.messaging import QueueConsumer

from nameko_topology.acks import CoalescedAcks
from nameko_topology.compat import consumer_providers, set_consumers
from nameko_topology.constants import PREFETCH_COUNT_CONFIG_KEY
from nameko_topology.declarer import TopologyDeclarer
from nameko_topology.exceptions import CONNECTION_ERRORS
from nameko_topology.uris import redact, redact_text

log = logging.getLogger(__name__)


class ResilientQueueConsumer(QueueConsumer):
    """nameko's queue consumer, minus a crash when the connection drops under an ack.

    nameko's ``ack_message`` and ``requeue_message`` catch amqp's ``ConnectionError`` only; a
    socket reset surfaces as ``OSError`` and, raised in a worker's result handling, would kill
    the container. The message needs nothing: the broker re-queues the unacked deliveries of a
    closed connection.
    """

    def ack_message(self, message):
        self._settle(message, message.ack)

    def requeue_message(self, message):
        self._settle(message, message.requeue)

    def on_connection_error(self, exc, interval):
        """kombu's callback for each failed connection attempt: nameko's logs the URI with
        only the first password of a failover list masked, the others in clear."""
        log.warning("Error connecting to broker at %s (%s).\nRetrying in %s seconds.",
                    redact(self.amqp_uri), redact_text(str(exc)), interval)

    def reject_message(self, message):
        """``basic.reject(requeue=False)``: the broker dead-letters it, if the queue has a DLX."""
        self._settle(message, partial(message.reject, requeue=False))

    def _settle(self, message, settle):
        if not message.channel.connection:
            return  # the connection is gone and the message back in its queue
        try:
            settle()
        except CONNECTION_ERRORS as exc:
            log.warning("%s: connection lost before message %s was settled (%s); the broker "
                        "redelivers it", self, message.properties.get("message_id"), exc)


class TopologyQueueConsumer(ResilientQueueConsumer):
    """The queue consumer behind every ``@handle`` entrypoint of a container.

    Differs from nameko's in five ways: it hands raw messages to the entrypoint (no kombu
    decoding, which would ack undecodable bodies), it re-declares the whole topology after
    every (re)connect, its prefetch comes from ``PREFETCH_COUNT`` (default ``max_workers``)
    instead of being tied to ``max_workers``, the acks of workers that finish together go
    out as one (:class:`~nameko_topology.acks.CoalescedAcks`): an ack costs a socket write,
    and the deliveries of a batch entrypoint that arrive together go to one worker
    (:class:`~nameko_topology.batching.CoalescedDeliveries`).
    """

    declarer = TopologyDeclarer()
    _acks = None  # CoalescedAcks of the channel the latest delivery came on

    @property
    def prefetch_count(self):
        return self.container.config.get(PREFETCH_COUNT_CONFIG_KEY) or self.container.max_workers

    def get_consumers(self, consumer_cls, channel):
        # The broker may have lost non-durable entities, or been reset, while we were away.
        with self.connection as connection:
            self.declarer.declare(connection)
        consumers = {}
        for provider in consumer_providers(self):
            consumer = consumer_cls(
                queues=[provider.queue], on_message=partial(self.handle_raw_message, provider)
            )
            consumer.qos(prefetch_count=self.prefetch_count)
            consumers[provider] = consumer
        return set_consumers(self, consumers)

    def handle_raw_message(self, provider, message):
        if self._acks is None or self._acks.channel is not message.channel:
            self._acks = CoalescedAcks(message.channel)  # a new channel: tags start over
        self._acks.delivered(message.delivery_tag)
        if provider.batches is None:
            provider.spawn_thread(partial(provider.handle_messages, [message]))
        else:
            provider.batches.add(message)

    def ack_message(self, message):
        if self._acks is not None and self._acks.channel is message.channel:
            self._acks.finished(message.delivery_tag)
        else:
            super().ack_message(message)  # a message of an earlier channel

    def requeue_message(self, message):
        if self._acks is not None and self._acks.channel is message.channel:
            self._acks.settled_alone(message.delivery_tag)
        super().requeue_message(message)

    def reject_message(self, message):
        if self._acks is not None and self._acks.channel is message.channel:
            self._acks.settled_alone(message.delivery_tag)
        super().reject_message(message)
