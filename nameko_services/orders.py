"""The orders service: takes orders, publishes OrderPlaced, follows their reservation outcome."""
import time
import uuid

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, bindparam, select, update

from nameko_services.topology import Database, Outbox, handle, insert_once, rpc

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

# only a PENDING order changes: a redelivered outcome is a no-op
SETTLE = (
    update(orders)
    .where(orders.c.order_id == bindparam("settled_order_id"), orders.c.status == PENDING)
    .values(status=bindparam("new_status"), reason=bindparam("new_reason"),
            updated_at=bindparam("now"))
)


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
        now = time.time()
        order = {
            "order_id": order_id or uuid.uuid4().hex, "item": item, "quantity": quantity,
            "status": PENDING, "reason": None, "idempotency_key": idempotency_key,
            "created_at": now, "updated_at": now,
        }
        with self.db.transaction() as connection:
            # insert first: the common case costs one statement, and a racing duplicate
            # waits on the unique keys instead of slipping between a check and an insert
            if not insert_once(connection, orders, **order):
                return _as_dict(_existing(connection, order_id, idempotency_key, item, quantity))
            self.outbox.add(connection, "OrderPlaced", {
                "order_id": order["order_id"], "item": item, "quantity": quantity})
        return _as_dict(order)

    @rpc
    def get_order(self, order_id):
        with self.db.transaction() as connection:
            row = connection.execute(select(orders).where(orders.c.order_id == order_id)).first()
        return None if row is None else _as_dict(row)

    @rpc
    def list_orders(self):
        with self.db.transaction() as connection:
            rows = connection.execute(select(orders).order_by(orders.c.created_at)).all()
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
        with self.db.transaction() as connection:
            connection.execute(SETTLE, {"settled_order_id": order_id, "new_status": status,
                                        "new_reason": reason, "now": time.time()})


def _existing(connection, order_id, idempotency_key, item, quantity):
    """The stored order that the order id or idempotency key names; OrderConflict if it is
    not the same order."""
    for column, value, field in ((orders.c.order_id, order_id, "order_id"),
                                 (orders.c.idempotency_key, idempotency_key, "Idempotency-Key")):
        if value is None:
            continue
        row = connection.execute(select(orders).where(column == value)).first()
        if row is None:
            continue
        if (row.item, row.quantity) != (item, quantity):
            raise OrderConflict(f"{field} already names order {row.order_id} "
                                f"({row.quantity} x {row.item})")
        return row
    raise AssertionError("insert_once found a conflict that no unique key explains")


def _as_dict(row):
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    data.pop("idempotency_key", None)
    data.pop("updated_at", None)
    return data
