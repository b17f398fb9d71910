"""The transactional outbox: messages stored with the state change that caused them.

A handler that changes state and then publishes can crash in between (state without event) or
publish and then fail to commit (event without state). The outbox writes the event in the same
transaction as the state change; a relay in the same container publishes stored events with
publisher confirms and deletes each one only after its confirm. A crash anywhere re-publishes
the stored event, with the same ``message_id``, after the restart: at-least-once delivery, which
consumers turn into exactly-once effects by deduplicating (see ``database.insert_once``).

Each row is written already claimed by the relay of the process that wrote it, so the relay
reads its own rows and needs no claiming transaction per batch. Rows whose claim is older than
``OUTBOX_CLAIM_LEASE_SECONDS`` (their process died, or the broker would not take them) are adopted by
whichever relay sweeps next, in this process or another instance sharing the database.
"""
import logging
import time
import uuid
from weakref import WeakSet

import eventlet
from eventlet.queue import Empty, LightQueue
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider
from sqlalchemy import (
    Column, Float, Index, Integer, MetaData, String, Table, Text, bindparam, delete, or_, select,
    update,
)

from nameko_topology.batch import BatchPublisher
from nameko_topology.constants import (
    DEFAULT_OUTBOX_BATCH_SIZE, DEFAULT_OUTBOX_CLAIM_LEASE, DEFAULT_OUTBOX_POLL,
    OUTBOX_BATCH_SIZE_CONFIG_KEY, OUTBOX_CLAIM_LEASE_CONFIG_KEY, OUTBOX_POLL_CONFIG_KEY,
)
from nameko_topology.database import database_of
from nameko_topology.declarer import TopologyDeclarer
from nameko_topology import metrics
from nameko_topology.messages import (
    MAX_CORRELATION_ID_LENGTH, check_payload, max_message_bytes, outgoing,
)
from nameko_topology.migrations import OUTBOX_MIGRATIONS
from nameko_topology import tracing
from nameko_topology.correlation import correlation_id_of, usable

log = logging.getLogger(__name__)

ERROR_BACKOFF_SECONDS = 1.0


def outbox_table(metadata, service_name):
    return Table(
        f"{service_name}_outbox", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("message_id", String(64), nullable=False, unique=True),
        Column("message_type", String(200), nullable=False),
        Column("exchange", String(255), nullable=False),
        Column("routing_key", String(255), nullable=False),
        Column("correlation_id", String(MAX_CORRELATION_ID_LENGTH), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", Float, nullable=False),
        # the trace context of the work that staged it: the relay's publish span is its child
        Column("traceparent", String(tracing.MAX_TRACEPARENT_LENGTH)),
        Column("claimed_by", String(64)),
        Column("claimed_at", Float),
        Column("attempts", Integer, nullable=False, default=0),
        # the relay's reads: its own claimed rows in id order, and the sweep for lapsed claims
        Index(f"{service_name}_outbox_claimed_by_id", "claimed_by", "id"),
        Index(f"{service_name}_outbox_claimed_at", "claimed_at"),
    )


class Outbox(DependencyProvider):
    """Injects an outbox whose ``add(connection, message_type, payload)`` stages a message.

    The message is checked against its type in ``topology.yaml`` (and against
    ``MAX_MESSAGE_BYTES``: ``MessageTooLarge`` if over) and written through
    ``connection``, so it is committed or rolled back with the rest of the transaction. After the
    worker ends, the container's relay publishes it (persistent, confirmed, mandatory).

    :Parameters:
        database: attribute name of the service's
            :class:`~nameko_topology.database.Database` dependency.

    Example::

        class Orders:
            db = Database(metadata)
            outbox = Outbox("db")

            @rpc
            def place_order(self, item, quantity):
                with self.db.transaction() as connection:
                    connection.execute(orders.insert().values(...))
                    self.outbox.add(connection, "OrderPlaced", {...})
    """

    declarer = TopologyDeclarer()
    metrics_server = metrics.MetricsServer()

    def __init__(self, database="db"):
        self.database_attr = database

    def setup(self):
        config = self.container.config
        self.lease = config.get(OUTBOX_CLAIM_LEASE_CONFIG_KEY, DEFAULT_OUTBOX_CLAIM_LEASE)
        self.poll = config.get(OUTBOX_POLL_CONFIG_KEY, DEFAULT_OUTBOX_POLL)
        self.batch_size = config.get(OUTBOX_BATCH_SIZE_CONFIG_KEY, DEFAULT_OUTBOX_BATCH_SIZE)
        self.database = database_of(self.container, self.database_attr, "Outbox")
        self.table = table = outbox_table(MetaData(), self.container.service_name)
        self.database.migrate(table.metadata, OUTBOX_MIGRATIONS,
                              f"{self.container.service_name}_outbox_alembic_version",
                              table=table.name)
        self.database.create(table.metadata)
        self.publisher = BatchPublisher(self.container.config[AMQP_URI_CONFIG_KEY])
        self.max_message_bytes = max_message_bytes(self.container.config)
        self.relay_id = uuid.uuid4().hex
        # built once: the relay runs them after every worker that staged a message
        self._own_rows = (select(table).where(table.c.claimed_by == self.relay_id)
                          .order_by(table.c.id).limit(self.batch_size))
        self._insert_row = table.insert()
        self._delete_rows = delete(table).where(table.c.id.in_(bindparam("ids", expanding=True)))
        self._wakeups = LightQueue()
        self._stopping = False
        self._staged = WeakSet()  # worker contexts that staged a message
        self.published = metrics.PublishedMetrics(self.container.service_name)
        metrics.watch_outbox(self.container.service_name, self.database, table)

    def start(self):
        self._relay_thread = self.container.spawn_managed_thread(self._relay)

    def stop(self):
        # workers have finished (dependencies stop after them): publish what they staged
        self._stopping = True
        self.wake()
        self._relay_thread.wait()
        self.publisher.close()
        metrics.unwatch_outbox(self.container.service_name)

    def kill(self):
        self._stopping = True
        self.wake()
        self.publisher.close()
        metrics.unwatch_outbox(self.container.service_name)

    def get_dependency(self, worker_ctx):
        return _OutboxHandle(self, worker_ctx)

    def worker_teardown(self, worker_ctx):
        if worker_ctx in self._staged:
            self._staged.discard(worker_ctx)
            self.wake()

    def wake(self):
        if self._wakeups.qsize() == 0:
            self._wakeups.put(None)

    def _relay(self):
        next_sweep = 0.0
        while True:
            try:
                if time.monotonic() >= next_sweep:
                    self.adopt_expired()
                    next_sweep = time.monotonic() + self.poll
                relayed = self.relay_pending()
            except Exception:
                log.exception("outbox relay failed; retrying in %ss", ERROR_BACKOFF_SECONDS)
                relayed = 0
                eventlet.sleep(ERROR_BACKOFF_SECONDS)
            if self._stopping and relayed < self.batch_size:
                return
            if relayed < self.batch_size:
                try:
                    self._wakeups.get(timeout=self.poll)
                except Empty:
                    pass

    def relay_pending(self):
        """Publish up to ``OUTBOX_BATCH_SIZE`` of this relay's stored messages; return how many the
        broker confirmed."""
        with self.database.transaction() as connection:
            rows = connection.execute(self._own_rows).all()
        if not rows:
            return 0
        # untraced, a batch costs no span bookkeeping per message
        spans = [_publish_span(row) for row in rows] if tracing.enabled() else ()
        try:
            outcome = self.publisher.publish(
                [_as_message(row, span) for row, span in zip(rows, spans)] if spans
                else [_as_message(row) for row in rows])
        except Exception as exc:
            for span in spans:
                tracing.end_span(span, exc)
            # some may have been confirmed already: they are published twice, none is lost
            self._settle(confirmed=[], released=[row.id for row in rows])
            raise
        for span in spans:
            tracing.end_span(span)
        returned = [row.id for row in rows if row.message_id in outcome.returned]
        for row in rows:
            if row.message_id in outcome.returned:
                log.error("outbox: %s %s was not routed (%s); retrying in %ss", row.message_type,
                          row.message_id, outcome.returned[row.message_id], self.lease)
        confirmed = [row for row in rows if row.message_id in outcome.confirmed]
        self._settle(confirmed=[row.id for row in confirmed],
                     released=[row.id for row in rows if row.message_id in outcome.nacked],
                     parked=returned)
        self.published.confirmed(row.message_type for row in confirmed)
        return len(confirmed)

    def _settle(self, confirmed, released, parked=()):
        # released: retried at the next sweep; parked: once its lease has run out, not in a
        # hot loop (an unroutable message stays unroutable until someone fixes a binding)
        table = self.table
        with self.database.transaction() as connection:
            if confirmed:
                connection.execute(self._delete_rows, {"ids": confirmed})
            if released:
                connection.execute(update(table).where(table.c.id.in_(released))
                                   .values(claimed_by=None, claimed_at=None))
            if parked:
                connection.execute(update(table).where(table.c.id.in_(parked))
                                   .values(claimed_by=None))

    def adopt_expired(self):
        """Claim the rows nobody holds a live claim on: released ones, and those of relays
        that died (or could not publish) more than ``OUTBOX_CLAIM_LEASE_SECONDS`` ago."""
        # a lease rather than a held lock: short transactions, and two instances of a service
        # sharing one database never publish the same rows at the same time
        table, now = self.table, time.time()
        with self.database.transaction() as connection:
            connection.execute(
                update(table)
                .where(or_(table.c.claimed_at.is_(None),
                           table.c.claimed_at < now - self.lease))
                .values(claimed_by=self.relay_id, claimed_at=now, attempts=table.c.attempts + 1)
            )


class _OutboxHandle:
    def __init__(self, outbox, worker_ctx):
        self._outbox = outbox
        self._worker_ctx = worker_ctx

    def check(self, message_type, payload):
        """Raise ``InvalidMessage`` if ``payload`` is not a valid ``message_type`` message: what
        :meth:`add` would refuse, found before anything is written."""
        check_payload(self._outbox.declarer.topology.message(message_type), payload)

    def add(self, connection, message_type, payload, message_id=None, correlation_id=None,
            cause=None, traceparent=None):
        """Stage ``payload`` as a ``message_type`` message in ``connection``'s transaction.

        Its correlation id is ``correlation_id`` if given, else that of ``cause``, the payload
        (of those a batch handler received) that this message follows from, else the worker's
        own (see :mod:`~nameko_topology.correlation`). Its trace parent, when tracing is on, is
        ``traceparent`` if given, else the span of ``cause``, else the worker's. Returns the
        message id (the event id downstream consumers see).
        """
        message_id, = self.add_many(
            connection, message_type, [payload],
            message_ids=None if message_id is None else [message_id],
            correlation_ids=None if correlation_id is None else [correlation_id],
            causes=None if cause is None else [cause],
            traceparents=None if traceparent is None else [traceparent])
        return message_id

    def add_many(self, connection, message_type, payloads, message_ids=None,
                 correlation_ids=None, causes=None, traceparents=None):
        """:meth:`add` for each of ``payloads``, in one statement; returns their message ids.
        ``message_ids``, ``correlation_ids``, ``causes`` and ``traceparents``, when given, hold
        one entry (or ``None``) per payload.

        A handler of a batch stages its batch's events this way: an INSERT per event costs
        more than the event's own share of one ``executemany``.
        """
        if not payloads:
            return []
        outbox, worker_ctx = self._outbox, self._worker_ctx
        spec = outbox.declarer.topology.message(message_type)
        own = correlation_id_of(worker_ctx)
        none = [None] * len(payloads)
        now = time.time()
        rows = []
        traced = tracing.enabled()
        for payload, message_id, correlation_id, cause, traceparent in zip(
                payloads, message_ids or none, correlation_ids or none, causes or none,
                traceparents or none):
            message = outgoing(spec, payload, message_id=message_id,
                               correlation_id=(usable(correlation_id)
                                               or (own if cause is None
                                                   else correlation_id_of(worker_ctx, cause))),
                               max_bytes=outbox.max_message_bytes)
            rows.append({
                "message_id": message["message_id"], "message_type": message_type,
                "exchange": message["exchange"], "routing_key": message["routing_key"],
                "correlation_id": message["correlation_id"], "body": message["body"],
                "traceparent": tracing.usable_traceparent(traceparent) or (
                    tracing.traceparent_for(worker_ctx, cause) if traced else None),
                "created_at": now, "claimed_by": outbox.relay_id, "claimed_at": now,
                "attempts": 1,
            })
        connection.execute(outbox._insert_row, rows)
        outbox._staged.add(worker_ctx)
        return [row["message_id"] for row in rows]


def _publish_span(row):
    """The producer span of publishing ``row``, a child of the work that staged it."""
    return tracing.start_span(
        f"publish {row.exchange}", tracing.SpanKind.PRODUCER, row.traceparent,
        tracing.messaging_attributes("publish", row.exchange, row.routing_key, row.message_id,
                                     row.correlation_id))


def _as_message(row, span=None):
    # untraced here, the row's own trace context still goes on: another process may trace
    traceparent = tracing.traceparent_of(span) if span is not None else row.traceparent
    return {
        "exchange": row.exchange, "routing_key": row.routing_key, "body": row.body,
        "message_id": row.message_id, "correlation_id": row.correlation_id,
        "type": row.message_type,
        "headers": {tracing.TRACEPARENT: traceparent} if traceparent else None,
    }
