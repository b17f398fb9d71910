"""Test doubles for ``worker_factory`` unit tests of topology services."""
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, select

from nameko_topology.messages import check_payload, outgoing


class FakeOutbox:
    """Stands in for the :class:`~nameko_topology.outbox.Outbox` dependency: payloads are
    checked against ``topology`` exactly as the real outbox checks them, and what is staged is
    recorded instead of relayed.

    With ``database`` (a :class:`~nameko_topology.database.DatabaseHandle`), staged messages
    are written in the caller's transaction, as the real outbox writes them: a transaction that
    rolls back stages nothing. Without it they are recorded at once.

    Example::

        service = worker_factory(InventoryService, db=database, outbox=FakeOutbox(topology, database))
        service.on_order_placed([...])
        assert service.outbox.staged == [("InventoryReserved", {...})]
    """

    def __init__(self, topology, database=None):
        self.topology = topology
        self.database = database
        self._recorded = []
        self.table = Table("fake_outbox", MetaData(), Column("id", Integer, primary_key=True),
                           Column("message_type", String), Column("payload", JSON))
        if database is not None:
            database.create(self.table.metadata)

    def check(self, message_type, payload):
        """Raise ``InvalidMessage`` if ``payload`` is not a valid ``message_type`` message."""
        check_payload(self.topology.message(message_type), payload)

    def add(self, connection, message_type, payload, message_id=None, correlation_id=None,
            cause=None, traceparent=None):
        """Stage one message; returns its message id."""
        message_id, = self.add_many(connection, message_type, [payload],
                                    message_ids=None if message_id is None else [message_id])
        return message_id

    def add_many(self, connection, message_type, payloads, message_ids=None,
                 correlation_ids=None, causes=None, traceparents=None):
        """Stage ``payloads``; returns their message ids. Correlation ids and trace parents are not
        recorded: a worker_factory worker handles no message to take them from."""
        spec = self.topology.message(message_type)
        messages = [outgoing(spec, payload, message_id=message_id)
                    for payload, message_id in zip(payloads, message_ids or [None] * len(payloads))]
        rows = [{"message_type": message_type, "payload": payload} for payload in payloads]
        if rows and self.database is not None:
            connection.execute(self.table.insert(), rows)
        elif rows:
            self._recorded.extend(rows)
        return [message["message_id"] for message in messages]

    @property
    def staged(self):
        """``(message_type, payload)`` of every message staged (and committed), in order."""
        if self.database is None:
            return [(row["message_type"], row["payload"]) for row in self._recorded]
        with self.database.transaction() as connection:
            rows = connection.execute(select(self.table).order_by(self.table.c.id)).all()
        return [(row.message_type, row.payload) for row in rows]


class FakeCorrelation:
    """Stands in for the :class:`~nameko_topology.correlation.Correlation` dependency in a
    ``worker_factory`` worker, which handles no message to take a correlation id from: every
    call answers ``correlation_id``.

    Example::

        service = worker_factory(NotificationsService, db=database,
                                 correlation=FakeCorrelation("req-1"))
    """

    def __init__(self, correlation_id=None):
        self.correlation_id = correlation_id

    def __call__(self, cause=None):
        return self.correlation_id
