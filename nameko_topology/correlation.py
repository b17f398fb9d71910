"""Correlation ids: what every message a worker sends carries, to say what it follows from.

A request's id (the gateway's ``X-Request-ID``) travels as the RPC call's nameko context header
``nameko.correlation_id``, and from there as the AMQP ``correlation_id`` of each message sent
because of it, and of each message sent because of those. A worker that handles one message or
one call has one correlation id; a batch handler's worker has one per message, which
:func:`correlation_id_of` finds from the payload the handler received
(``Outbox.add(..., cause=event)``, :class:`Correlation`).
"""
from weakref import WeakKeyDictionary

from nameko.extensions import DependencyProvider

from nameko_topology.delivery import is_short_string
from nameko_topology.messages import MAX_CORRELATION_ID_LENGTH

#: the worker context data key (and so the ``nameko.``-prefixed header) of the correlation id
CORRELATION_ID_CONTEXT_KEY = "correlation_id"

# worker context -> {id(payload): delivery}: a batch of n looked up n times costs n, not n^2
_deliveries_by_payload = WeakKeyDictionary()


def usable(correlation_id):
    """``correlation_id`` if it is a string short enough to send and store, else ``None``: a
    delivery's or a caller's may be anything, and a new id is better than a refused one."""
    if correlation_id and is_short_string(correlation_id) \
            and len(correlation_id) <= MAX_CORRELATION_ID_LENGTH:
        return correlation_id
    return None


def correlation_id_of(worker_ctx, cause=None):
    """The correlation id of what the worker of ``worker_ctx`` sends because of ``cause``.

    ``cause`` is a payload the worker's handler received (one of a batch handler's list): the
    id is that message's. Without it: the worker's own, its call's or its lone message's.
    ``None`` when there is none to use (the message then gets a new one).

    :raises ValueError: ``cause`` is not a payload this worker's handler received.
    """
    if cause is None:
        return usable(worker_ctx.data.get(CORRELATION_ID_CONTEXT_KEY))
    by_payload = _deliveries_by_payload.get(worker_ctx)
    if by_payload is None:
        deliveries_of = getattr(worker_ctx.entrypoint, "deliveries_of", None)
        by_payload = _deliveries_by_payload[worker_ctx] = {
            id(delivery.payload): delivery
            for delivery in (deliveries_of(worker_ctx) if deliveries_of is not None else ())}
    delivery = by_payload.get(id(cause))
    # the identity check too: an id is only unique among objects alive at the same time
    if delivery is None or delivery.payload is not cause:
        raise ValueError("cause must be a payload this worker's handler received")
    return usable(delivery.message.properties.get("correlation_id"))


class Correlation(DependencyProvider):
    """Injects ``correlation_id(cause=None)``: :func:`correlation_id_of` for the worker, for a
    handler that stores the id of what it handles.

    Example::

        class Notifications:
            correlation = Correlation()

            @handle("inventory_reserved_queue", batch_size=100)
            def on_reserved(self, events):
                rows = [{**event, "correlation_id": self.correlation(event)} for event in events]
    """

    def get_dependency(self, worker_ctx):
        return lambda cause=None: correlation_id_of(worker_ctx, cause)
