"""The ``@handle`` entrypoint: consume a topology queue with manual acks and dead-lettering.

nameko's own ``@consume`` acks a message whose handler raised, and kombu acks a body it cannot
decode, so nothing would ever reach a dead-letter exchange. This entrypoint owns decoding,
validation and the ack/retry/dead-letter decision itself::

    delivery --decode+validate--> invalid ---------------------------> dead-letter (reason)
                  |
                  +--> handler --returns------------------------------> ack
                           |
                           +--raises a PERMANENT_ERRORS one-----------> dead-letter (reason)
                           +--raises anything else--> attempts left? --> copy to retry queue,
                                                          |              ack
                                                          no ---------> dead-letter (reason)

A retry copy, with ``x-attempt`` + 1, goes to the queue's retry queue for the delay after that
attempt (``<queue>.retry.<delay>``, see :mod:`~nameko_topology.retries`); the broker
dead-letters it back to the queue when the delay has passed. No worker and no prefetch slot
waits meanwhile.

Dead-lettering publishes a copy of the message, with a complete failure record in its headers
(:func:`~nameko_topology.failures.dead_letter_headers`), to the queue's dead-letter exchange
(confirmed), then acks the original. RabbitMQ's own ``reject(requeue=False)`` cannot carry a
record, so it is only the fallback when that publish fails, or when the queue has no
dead-letter exchange.

With ``batch_size``, the deliveries read in one turn of the event loop share one worker::

    deliveries --decode+validate each--> invalid -------------------> dead-letter (reason)
                  |
                  +--> handler(list of payloads) --returns----------> ack each
                           |
                           +--raises anything--> each message alone, as a batch of one,
                                                 through the diagram above

Whatever a delivery holds, nothing it carries may raise out of the consumer: headers,
properties and size are checked first (:mod:`~nameko_topology.delivery`), and an
unexpected error while checking one dead-letters that one with the error as its reason.
"""
import logging
import sqlite3
from collections import namedtuple
from functools import partial
from weakref import WeakKeyDictionary

from nameko.amqp.publish import Publisher as PublisherCore
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import Consumer
from sqlalchemy.exc import DataError

from nameko_topology.batching import CoalescedDeliveries
from nameko_topology.constants import AMQP_URI_CONFIG_KEY
from nameko_topology.declarer import TopologyDeclarer
from nameko_topology.delivery import (
    NAMEKO_HEADER_PREFIX, attempt_of, check_delivery, copied_body, copied_headers,
    copied_properties, is_short_string, original_route, shown,
)
from nameko_topology.exceptions import InvalidMessage, MessageTooLarge, PermanentError
from nameko_topology.failures import (
    MAX_REASON_LENGTH, dead_letter_headers, described, retry_headers,
)
from nameko_topology.gcfreeze import GcFreeze
from nameko_topology.logcontext import log_context, message_fields
from nameko_topology.messages import (
    DEAD_LETTER_ID_HEADER, JSON_CONTENT_TYPE, ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER, REASON_HEADER, check_payload, decode_body, max_message_bytes,
)
from nameko_topology.correlation import CORRELATION_ID_CONTEXT_KEY
from nameko_topology.metrics import MetricsServer, QueueMetrics
from nameko_topology.queue_consumer import TopologyQueueConsumer
from nameko_topology.retries import jittered, retry_queue_name

log = logging.getLogger(__name__)

#: What a handler may raise that retrying cannot fix: the same message would raise it again on
#: every attempt, so it is dead-lettered at once. The framework's own verdicts, a number too big
#: for its column or type (``OverflowError``; SQLAlchemy's ``DataError``, which wraps the
#: DBAPI's ``DataError``, and sqlite3's own), and a string the driver cannot encode
#: (``UnicodeError``: a lone surrogate). Anything else is taken as transient and retried.
PERMANENT_ERRORS = (
    PermanentError, InvalidMessage, OverflowError, UnicodeError, DataError, sqlite3.DataError,
)


# a delivery that passed its checks, and its decoded payload
Delivery = namedtuple("Delivery", "message payload")


class Handle(Consumer):
    """Entrypoint consuming the topology queue ``queue_name``.

    The handler receives the decoded body (a dict) that has been checked against the shape
    of its message type, found from the exchange and routing key it was published with.

    With ``batch_size``, the handler receives a list of such bodies instead: the valid ones
    among the deliveries read in one turn of the event loop, up to ``batch_size`` of them (and
    never more than the consumer's prefetch, ``PREFETCH_COUNT``: the broker sends no more
    unacked messages). Each is acked once the handler returns. If it raises anything, each
    message is handled again alone, in a list of one, and that one gets the usual treatment:
    acked, retried or dead-lettered. So a batch handler must be all or nothing (one database
    transaction), and a message at fault costs its batch-mates one more run, nothing else.
    A batch of several messages runs without their context data (correlation id, nameko's
    headers): each message has its own; a list of one runs with its message's.

    :Parameters:
        queue_name: name of a queue declared in ``topology.yaml``.
        batch_size: the most messages per handler call; ``None`` (default) for one message,
            not in a list, per call.

    Example::

        @handle("order_placed_queue")
        def on_order_placed(self, order):
            ...

        @handle("inventory_reserved_queue", batch_size=100)
        def on_inventory_reserved(self, events):
            with self.db.transaction() as connection:
                for event in events:
                    ...
    """

    queue_consumer = TopologyQueueConsumer()
    declarer = TopologyDeclarer()
    gc_freeze = GcFreeze()
    metrics_server = MetricsServer()

    def __init__(self, queue_name, batch_size=None, **kwargs):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.queue_name = queue_name
        self.batch_size = batch_size
        self._worker_deliveries = WeakKeyDictionary()
        super().__init__(queue=None, **kwargs)

    def setup(self):
        topology = self.declarer.topology
        self.topology = topology
        self.queue_spec = topology.queue(self.queue_name)
        self.queue = topology.kombu_queue(self.queue_name)
        self.max_message_bytes = (
            self.queue_spec.max_message_bytes or max_message_bytes(self.container.config))
        self.republisher = PublisherCore(self.container.config[AMQP_URI_CONFIG_KEY])
        self.batches = None if self.batch_size is None else CoalescedDeliveries(
            self.batch_size, spawn=self.spawn_thread, handle=self.handle_messages)
        self.metrics = QueueMetrics(self.container.service_name, self.queue_name)
        super().setup()

    def deliveries_of(self, worker_ctx):
        """The :class:`Delivery` (AMQP message and payload) of each message that the worker of
        ``worker_ctx`` handles: one, or a batch's."""
        return self._worker_deliveries.get(worker_ctx, ())

    def spawn_thread(self, fn):
        """Run ``fn`` in a managed thread: it is killed with the container, as workers are."""
        self.container.spawn_managed_thread(
            fn, identifier=f"{type(self).__name__}.handle_messages[{self.queue_name}]")

    # runs in a managed thread: an exception here would kill the container
    def handle_messages(self, messages):
        """Dead-letter the invalid ones among ``messages``; run one worker on the others."""
        deliveries = [delivery for delivery in map(self.checked, messages)
                      if delivery is not None]
        if deliveries:
            self.run_worker(deliveries)

    def checked(self, message):
        """The :class:`Delivery` of ``message``, or ``None`` once it is dead-lettered as
        invalid."""
        try:
            return Delivery(message, self.decode(message))
        except MessageTooLarge as exc:
            # a copy of the body would hold (and the broker store) the very bytes the limit is
            # there to keep out; the copy keeps the headers and properties
            self.dead_letter(message, f"invalid message: {exc}; the body is dropped",
                             body=b"")
        except InvalidMessage as exc:
            self.dead_letter(message, f"invalid message: {exc}")
        except Exception as exc:  # the last line of defence: a check that itself failed
            with log_context(**message_fields(message)):
                log.exception("%s: checking a message failed", self)
            # a bug, not an input: its traceback goes with the record
            self.dead_letter(message, f"invalid message: checking it failed: {described(exc)}",
                             exc=exc)
        return None

    def run_worker(self, deliveries):
        """Spawn the worker that hands the handler the payloads of ``deliveries``: the list of
        them for a batch handler, the one payload otherwise."""
        payloads = [delivery.payload for delivery in deliveries]
        try:
            worker_ctx = self.container.spawn_worker(
                self, (payloads if self.batch_size is not None else payloads[0],), {},
                context_data=self.context_data(deliveries),
                handle_result=partial(self.handle_result, deliveries),
            )
            # before the worker's greenthread first runs: spawning does not yield
            self._worker_deliveries[worker_ctx] = deliveries
            self.metrics.started(worker_ctx)
        except ContainerBeingKilled:
            for delivery in deliveries:
                self.queue_consumer.requeue_message(delivery.message)

    def context_data(self, deliveries):
        """The worker context data of ``deliveries``: nameko's context headers and the
        correlation id of a lone message. Each message of a batch has its own: giving one's to
        all would file the others' effects (their outbox events) under its correlation id."""
        if len(deliveries) != 1:
            return {}
        message = deliveries[0].message
        # only nameko's own context headers: the rest describe this message, not the call
        data = {
            key.removeprefix(NAMEKO_HEADER_PREFIX): value
            for key, value in (message.headers or {}).items()
            if key.startswith(NAMEKO_HEADER_PREFIX)
        }
        if message.properties.get("correlation_id"):
            data[CORRELATION_ID_CONTEXT_KEY] = message.properties["correlation_id"]
        return data

    def decode(self, message):
        """The message's payload, checked against its declared message type."""
        exchange, routing_key = check_delivery(message, self.max_message_bytes)
        payload = decode_body(message)
        spec = self.topology.message_for_route(exchange, routing_key)
        if spec is None:
            raise InvalidMessage(
                f"no message type is declared for exchange {exchange!r} "
                f"and routing key {routing_key!r}")
        check_payload(spec, payload)
        return payload

    def handle_result(self, deliveries, worker_ctx, result=None, exc_info=None):
        self.metrics.finished(worker_ctx)
        return super().handle_result(deliveries, worker_ctx, result, exc_info)

    def handle_message_processed(self, deliveries, result=None, exc_info=None):
        if exc_info is None:
            for delivery in deliveries:
                self.queue_consumer.ack_message(delivery.message)
            self.metrics.acked.inc(len(deliveries))
        elif len(deliveries) == 1:
            self.handle_failure(deliveries[0].message, exc_info[1])
        else:
            self.run_alone(deliveries, exc_info[1])

    def run_alone(self, deliveries, exc):
        """The batch of ``deliveries`` failed and rolled back: hand each to a worker by itself,
        so that only the message at fault is retried or dead-lettered."""
        log.warning("%s: a batch of %d failed (%s: %s); handling each message alone", self,
                    len(deliveries), type(exc).__name__, exc)
        # Each from a thread of its own, not from this worker: workers that wait for a free
        # slot in their own full pool would wait for ever.
        for delivery in deliveries:
            self.spawn_thread(partial(self.run_worker, [delivery]))

    def handle_failure(self, message, exc):
        """Dead-letter ``message``, whose handler raised ``exc``, or retry it."""
        retry = self.queue_spec.retry
        attempt, problem = attempt_of(message, retry.max_attempts)
        if isinstance(exc, PERMANENT_ERRORS):
            self.dead_letter(message, described(exc), exc=exc, attempt=attempt)
        elif problem is not None:
            self.dead_letter(message, f"{problem}; handler failed: {described(exc)}", exc=exc,
                             attempt=attempt)
        elif attempt >= retry.max_attempts:
            self.dead_letter(message, f"handler failed {attempt} times, last: {described(exc)}",
                             exc=exc, attempt=attempt)
        else:
            self.schedule_retry(message, attempt, exc)

    def schedule_retry(self, message, attempt, exc):
        """Publish a copy of ``message``, whose ``attempt`` failed with ``exc``, to the retry
        queue of the delay after that attempt, as attempt ``attempt + 1``; ack the original
        once the broker confirms the copy. If the copy cannot be published (a retry queue
        deleted on the broker), the message is dead-lettered instead."""
        retry = self.queue_spec.retry
        delay = retry.delay_after(attempt)
        retry_queue = retry_queue_name(self.queue_name, delay)
        log.warning("%s: attempt %d of %d failed (%s); retrying in %d ms through %s", self,
                    attempt, retry.max_attempts, described(exc), delay, retry_queue)
        try:
            self.publish_copy(
                message, exchange="", routing_key=retry_queue,
                extra_headers=retry_headers(message.headers, attempt + 1),
                content_type=message.content_type or JSON_CONTENT_TYPE,
                # kombu takes seconds; the queue's TTL is the delay itself
                expiration=jittered(delay, retry.jitter) / 1000 if retry.jitter else None)
        except Exception as failure:
            log.exception("%s: could not publish a retry to %r", self, retry_queue)
            self.dead_letter(message, f"could not schedule retry {attempt + 1} through "
                                      f"{retry_queue} ({described(failure)}); handler failed: "
                                      f"{described(exc)}", exc=exc, attempt=attempt)
        else:
            self.queue_consumer.ack_message(message)
            self.metrics.retried.inc()

    def dead_letter(self, message, reason, body=None, exc=None, attempt=None):
        """Send ``message`` to the queue's dead-letter exchange with a complete failure record
        (:func:`~nameko_topology.failures.dead_letter_headers`); never raises.

        ``body`` replaces the message's own body in the copy, if given; ``exc`` is what the
        handler raised (None for a message refused before it: no exception headers);
        ``attempt`` the attempt that failed (default: the message's, as the retries count).
        """
        # its lines carry the message's ids, also when no worker of its own has bound them
        with log_context(**message_fields(message)):
            self._dead_letter(message, reason, body, exc, attempt)

    def _dead_letter(self, message, reason, body, exc, attempt):
        dead_letter = self.queue_spec.dead_letter
        self.log_dead_letter(message, reason)
        self.metrics.dead_lettered.inc()
        if dead_letter is None:
            log.error("%s: queue %r has no dead_letter exchange; the message is dropped",
                      self, self.queue_name)
            self.queue_consumer.reject_message(message)
            return
        try:
            if attempt is None:
                attempt, _ = attempt_of(message, self.queue_spec.retry.max_attempts)
            headers = dead_letter_headers(
                message.headers, reason, queue=self.queue_name,
                service=self.container.service_name, handler=self.method_name,
                attempt=attempt, exc=exc)
        except Exception:  # the record is a bonus; the dead letter is not
            log.exception("%s: could not write the failure record of a dead letter", self)
            headers = {REASON_HEADER: reason[:MAX_REASON_LENGTH]}
        _, routing_key = original_route(message)
        self.republish(
            message,
            exchange=dead_letter.exchange,
            routing_key=dead_letter.routing_key or routing_key,
            extra_headers=headers,
            mandatory=False,
            body=body,
            # a dead letter is found by its id; one without a message id is known by it
            default_message_id=headers.get(DEAD_LETTER_ID_HEADER),
        )

    def log_dead_letter(self, message, reason):
        """Log that ``message`` is dead-lettered with ``reason``."""
        message_id = message.properties.get("message_id")
        if message_id is None:
            log.warning("%s: dead-lettering a message without a message_id: %s", self, reason)
        else:
            log.warning("%s: dead-lettering message %s: %s", self, shown(message_id), reason)

    def republish(self, message, exchange, routing_key, extra_headers, mandatory=True,
                  body=None, default_message_id=None):
        """Publish a confirmed copy of ``message`` (:meth:`publish_copy`), then ack the
        original; if the broker fails the publish, the original is rejected, which
        dead-letters it without the extra headers."""
        try:
            self.publish_copy(message, exchange, routing_key, extra_headers, mandatory=mandatory,
                              body=body, default_message_id=default_message_id)
        except Exception:
            log.exception("%s: could not re-publish message to %r; rejecting it", self, exchange)
            self.queue_consumer.reject_message(message)
        else:
            self.queue_consumer.ack_message(message)

    def publish_copy(self, message, exchange, routing_key, extra_headers, mandatory=True,
                     content_type=None, body=None, default_message_id=None, expiration=None):
        """Publish a copy of ``message`` with ``extra_headers`` and wait for its confirm.

        The caller acks the original after this returns: until the copy is confirmed the
        original stays unacked, so a crash in between can duplicate the message but never
        lose it. The copy holds what AMQP can carry of the original (see
        :func:`~nameko_topology.delivery.copied_headers`), so its content cannot make the
        publish fail; what raises here is the broker. ``body`` replaces the body,
        ``default_message_id`` is the copy's ``message_id`` if the original has none, and
        ``expiration`` (seconds) is its per-message TTL.
        """
        original_exchange, original_routing_key = original_route(message)
        headers = copied_headers(message.headers)
        headers.update({
            ORIGINAL_EXCHANGE_HEADER: original_exchange,
            ORIGINAL_ROUTING_KEY_HEADER: original_routing_key,
            **extra_headers,
        })
        if body is None:
            body, content_encoding = copied_body(message)
        else:
            content_encoding = "binary"
        content_type = content_type or message.content_type
        properties = copied_properties(message.properties)
        if default_message_id is not None:
            properties.setdefault("message_id", default_message_id)
        if expiration is not None:
            properties["expiration"] = expiration
        self.republisher.publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            headers=headers,
            content_type=(content_type if is_short_string(content_type) and content_type
                          else "application/octet-stream"),
            content_encoding=content_encoding,
            mandatory=mandatory,
            **properties,
        )

    def __repr__(self):
        service = getattr(getattr(self, "container", None), "service_name", "?")
        return f"<Handle {self.queue_name} [{service}.{getattr(self, 'method_name', '?')}]>"


def handle(queue_name, batch_size=None, **kwargs):
    """Decorate a service method as the :class:`Handle` entrypoint of topology queue
    ``queue_name`` (see :class:`Handle` for ``batch_size`` and what the handler receives)."""
    return Handle.decorator(queue_name, batch_size=batch_size, **kwargs)
