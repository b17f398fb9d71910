"""The orders service: takes orders, publishes OrderPlaced, follows their reservation outcome."""
import time
import uuid

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, select, update

from nameko_services.topology import Database, Outbox, handle, rpc

metadata = MetaData()

orders = Table(
    "orders_orders", metadata,
    Column("order_id", String(100), primary_key=True),
    Column("item", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", String(500)),
    Column("idempotency_key", String(200), unique=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

PENDING, CONFIRMED, REJECTED = "PENDING", "CONFIRMED", "REJECTED"


class OrderConflict(Exception):
    """An order id or idempotency key that already names a different order."""


class OrdersService:
    name = "orders"

    db = Database(metadata)
    outbox = Outbox("db")

    @rpc
    def place_order(self, item, quantity, order_id=None, idempotency_key=None):
        """Store a PENDING order and publish OrderPlaced; return the order.

        Placing the same order again (same ``order_id`` or ``idempotency_key``, same item and
        quantity) returns the stored order and publishes nothing.
        """
        with self.db.transaction() as session:
            existing = _find_existing(session, order_id, idempotency_key)
            if existing is not None:
                if (existing.item, existing.quantity) != (item, quantity):
                    field = "order_id" if existing.order_id == order_id else "Idempotency-Key"
                    raise OrderConflict(
                        f"{field} already names order {existing.order_id} "
                        f"({existing.quantity} x {existing.item})")
                return _as_dict(existing)
            now = time.time()
            order = {
                "order_id": order_id or uuid.uuid4().hex, "item": item, "quantity": quantity,
                "status": PENDING, "reason": None, "idempotency_key": idempotency_key,
                "created_at": now, "updated_at": now,
            }
            session.execute(orders.insert().values(**order))
            self.outbox.add(session, "OrderPlaced", {
                "order_id": order["order_id"], "item": item, "quantity": quantity})
        return _as_dict(order)

    @rpc
    def get_order(self, order_id):
        with self.db.transaction() as session:
            row = session.execute(select(orders).where(orders.c.order_id == order_id)).first()
        return None if row is None else _as_dict(row)

    @rpc
    def list_orders(self):
        with self.db.transaction() as session:
            rows = session.execute(select(orders).order_by(orders.c.created_at)).all()
        return [_as_dict(row) for row in rows]

    @rpc
    def health(self):
        self.db.ping()
        return {"status": "ok", "service": self.name}

    @handle("order_status_reserved_queue")
    def on_inventory_reserved(self, event):
        self._settle(event["order_id"], CONFIRMED, None)

    @handle("order_status_failed_queue")
    def on_inventory_failed(self, event):
        self._settle(event["order_id"], REJECTED, event["reason"])

    def _settle(self, order_id, status, reason):
        # only a PENDING order changes: a redelivered outcome is a no-op
        with self.db.transaction() as session:
            session.execute(
                update(orders)
                .where(orders.c.order_id == order_id, orders.c.status == PENDING)
                .values(status=status, reason=reason, updated_at=time.time()))


def _find_existing(session, order_id, idempotency_key):
    for column, value in ((orders.c.order_id, order_id),
                          (orders.c.idempotency_key, idempotency_key)):
        if value is not None:
            row = session.execute(select(orders).where(column == value)).first()
            if row is not None:
                return row
    return None


def _as_dict(row):
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    data.pop("idempotency_key", None)
    data.pop("updated_at", None)
    return data
