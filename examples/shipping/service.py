"""The shipping service: schedules one shipment for each order that inventory reserved.

It consumes InventoryReserved through a queue of its own, ``shipping_reserved_queue``, and
announces each shipment with a ShipmentScheduled event staged in the same transaction as the
shipment (the outbox), so a shipment and its event are committed together or not at all.
"""
import time

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, select

from nameko_topology import Database, HealthCheck, Outbox, handle, insert_once, rpc
from nameko_topology.pages import cursor_position, page_size, read_page
from nameko_topology.positions import next_positions

metadata = MetaData()

# one row per order: the shipment, and the inbox that makes a redelivery change nothing
shipments = Table(
    "shipping_shipments", metadata,
    Column("order_id", String(100), primary_key=True),
    Column("item", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("scheduled_at", Float, nullable=False),
    # commit order: the key list_shipments pages by, so that a cursor never skips a shipment
    Column("position", BigInteger, nullable=False),
    Index("shipping_shipments_position", "position", unique=True),
)


class ShippingService(HealthCheck):
    name = "shipping"

    db = Database(metadata)
    outbox = Outbox("db")

    @handle("shipping_reserved_queue")
    def on_inventory_reserved(self, reservation):
        """Schedule the shipment of a reserved order, once however often it is delivered."""
        shipment = {"order_id": reservation["order_id"], "item": reservation["item"],
                    "quantity": reservation["quantity"], "scheduled_at": time.time()}
        with self.db.transaction() as connection:
            position, = next_positions(connection, shipments.c.position, 1)
            if insert_once(connection, shipments, **shipment, position=position):
                self.outbox.add(connection, "ShipmentScheduled", shipment)

    @rpc
    def get_shipment(self, order_id):
        """The shipment of ``order_id``, or None if none is scheduled."""
        with self.db.transaction() as connection:
            row = connection.execute(
                select(shipments).where(shipments.c.order_id == order_id)).first()
        return None if row is None else _shipment(row)

    @rpc
    def list_shipments(self, limit=None, cursor=None):
        """One page of the shipments, oldest first: ``{"items": [...], "next": cursor,
        "more": bool}``; ``limit`` 1 to 1,000 (default 100), ``cursor`` a page's ``next``."""
        with self.db.transaction() as connection:
            return read_page(connection, select(shipments), shipments.c.position,
                             cursor_position(cursor), page_size(limit), item=_shipment)


def _shipment(row):
    shipment = row._asdict()
    del shipment["position"]  # the table's bookkeeping, not the shipment's
    return shipment
