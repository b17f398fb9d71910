"""Minimal services for ``bench.hop``: one message hop with nothing else in it.

``NoopHandler`` and ``NoopRpc`` do no work at all, so the CPU they use per message is the price
of the stack itself (eventlet, kombu/py-amqp, nameko's worker machinery and our entrypoints);
``InboxHandler`` adds the one SQLite transaction every real handler has.
"""
import time

from sqlalchemy import Column, Float, MetaData, String, Table

from nameko_topology import Database, handle, insert_once, rpc

HOP_QUEUE = "inventory_reserved_queue"

metadata = MetaData()
seen = Table("hop_seen", metadata,
             Column("order_id", String(100), primary_key=True),
             Column("seen_at", Float, nullable=False))


class NoopHandler:
    name = "hop_noop"

    @handle(HOP_QUEUE)
    def on_event(self, event):
        pass


class InboxHandler:
    name = "hop_inbox"

    db = Database(metadata)

    @handle(HOP_QUEUE)
    def on_event(self, event):
        with self.db.transaction() as connection:
            insert_once(connection, seen, order_id=event["order_id"], seen_at=time.time())


class NoopRpc:
    name = "hop_rpc"

    @rpc
    def ping(self):
        return None
