"""The shipping service: schedules one shipment for each order that inventory reserved.

It consumes InventoryReserved through a queue of its own, ``shipping_reserved_queue``, and
announces each shipment with a ShipmentScheduled event staged in the same transaction as the
shipment (the outbox), so a shipment and its event are committed together or not at all.
"""
import time

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, select

from nameko_topology import Database, HealthCheck, Outbox, handle, insert_once, rpc

metadata = MetaData()

# one row per order: the shipment, and the inbox that makes a redelivery change nothing
shipments = Table(
    "shipping_shipments", metadata,
    Column("order_id", String(100), primary_key=True),
    Column("item", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("scheduled_at", Float, nullable=False),
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
            if insert_once(connection, shipments, **shipment):
                self.outbox.add(connection, "ShipmentScheduled", shipment)

    @rpc
    def get_shipment(self, order_id):
        """The shipment of ``order_id``, or None if none is scheduled."""
        with self.db.transaction() as connection:
            row = connection.execute(
                select(shipments).where(shipments.c.order_id == order_id)).first()
        return None if row is None else row._asdict()

    @rpc
    def list_shipments(self):
        """Every shipment, oldest first."""
        with self.db.transaction() as connection:
            rows = connection.execute(select(shipments).order_by(shipments.c.scheduled_at)).all()
        return [row._asdict() for row in rows]
