"""The orders service: takes orders, publishes OrderPlaced, follows their reservation outcome."""
import logging
import time

from sqlalchemy import (
    BigInteger, Column, Float, Index, Integer, MetaData, String, Table, bindparam, select, update,
)
from sqlalchemy.exc import IntegrityError
from uuid6 import uuid7

from nameko.exceptions import serialize

from nameko_services import HANDLER_BATCH_SIZE, migrations
from nameko_services.columns import TruncatedString
from nameko_topology import (
    Correlation, Database, HealthCheck, InvalidMessage, Outbox, handle, insert_once, rpc,
)
from nameko_topology.correlation import usable
from nameko_topology.logcontext import log_context
from nameko_topology.messages import MAX_CORRELATION_ID_LENGTH
from nameko_topology.pages import cursor_position, page_size, read_page
from nameko_topology.positions import next_positions

log = logging.getLogger(__name__)

metadata = MetaData()

orders = Table(
    "orders_orders", metadata,
    Column("order_id", String(100), primary_key=True),
    Column("item", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", TruncatedString(500)),
    Column("idempotency_key", String(200), unique=True),
    # the request's (X-Request-ID): every message and log line about the order carries it
    Column("correlation_id", String(MAX_CORRELATION_ID_LENGTH)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # commit order (nameko_topology.positions): GET /orders pages by it and skips no order
    Column("position", BigInteger, nullable=False),
    Index("orders_orders_position", "position", unique=True),
    # the filters of GET /orders, each followed by the page key
    Index("orders_orders_status_position", "status", "position"),
    Index("orders_orders_item_position", "item", "position"),
)

PENDING, CONFIRMED, REJECTED = "PENDING", "CONFIRMED", "REJECTED"
STATUSES = (PENDING, CONFIRMED, REJECTED)

INSERT_ORDERS = orders.insert()  # one statement object: its compiled form is cached by identity

# only a PENDING order changes: a redelivered outcome is a no-op
SETTLE = (
    update(orders)
    .where(orders.c.order_id == bindparam("settled_order_id"), orders.c.status == PENDING)
    .values(status=bindparam("new_status"), reason=bindparam("new_reason"),
            updated_at=bindparam("now"))
)


def new_order_id():
    """A new order id: a UUIDv7 in hex. Ids sort by creation time, so the tables keyed by
    order id (here and downstream) grow at one end of their index instead of all over it: a
    commit rewrites a page or two, not one per row (measured in SQLite with 6,000-25,000 rows:
    about 35 us an insert instead of 100 with random UUIDv4 keys)."""
    return uuid7().hex


class OrderConflict(Exception):
    """An order id or idempotency key that already names a different order."""


class OrdersService(HealthCheck):
    name = "orders"

    db = Database(metadata, migrations=migrations.of("orders"))
    outbox = Outbox("db")
    correlation = Correlation()

    @rpc
    def place_order(self, item, quantity, order_id=None, idempotency_key=None,
                    correlation_id=None, traceparent=None):
        """Store a PENDING order and publish OrderPlaced; return the order.

        Placing the same order again (same ``order_id`` or ``idempotency_key``, same item and
        quantity) returns the stored order and publishes nothing. ``correlation_id`` (default:
        the call's) is stored with the order and carried by its OrderPlaced; ``traceparent``
        (W3C, default: the call's) is the trace parent of that publish, when tracing is on.
        """
        outcome, = self._place([{"item": item, "quantity": quantity, "order_id": order_id,
                                 "idempotency_key": idempotency_key,
                                 "correlation_id": correlation_id,
                                 "traceparent": traceparent}])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @rpc
    def place_orders(self, orders):
        """:meth:`place_order` for each dict of its arguments in ``orders``, in one transaction.

        Each order keeps its own ``correlation_id``: the gateway sends each request's.
        Returns one entry per order, in order: ``{"order": ...}``, or ``{"error": ...}`` (an
        exception serialised as nameko serialises an RPC error) for an order refused on its
        own (a conflicting id, a payload that breaks OrderPlaced); the others go ahead. The
        gateway sends the orders that arrive together this way: one call, one commit.
        """
        if not isinstance(orders, list) or not all(isinstance(order, dict) for order in orders):
            raise InvalidMessage("orders must be a list of objects")
        return [{"error": serialize(outcome)} if isinstance(outcome, Exception)
                else {"order": outcome}
                for outcome in self._place(orders)]

    def _place(self, requests):
        """The stored order, or the exception refusing it, for each request."""
        now = time.time()
        outcomes = []
        # (index in outcomes, order row, (OrderPlaced payload, its trace parent)) of the valid ones
        new = []
        for request in requests:
            # every refusal is found before anything is written: its batch-mates go ahead
            try:
                _check_arguments(request)
                request = dict(request)
                traceparent = request.pop("traceparent", None)
                order, placed = self._new_order(now, **request)
            except InvalidMessage as exc:
                outcomes.append(exc)
                continue
            new.append((len(outcomes), order, (placed, traceparent)))
            outcomes.append(None)
        if new:
            self._store(new, outcomes)
        return outcomes

    def _store(self, new, outcomes):
        """Store the orders of ``new``, setting each one's entry of ``outcomes``: all in one
        transaction, unless something in it fails, and then each order alone."""
        try:
            # usually every order is new: one INSERT for the orders, one for their events
            with self.db.transaction() as connection:
                # last thing before the inserts: the position lock is held until the commit
                positions = next_positions(connection, orders.c.position, len(new))
                connection.execute(INSERT_ORDERS, [{**order, "position": position}
                                                   for (_, order, _), position
                                                   in zip(new, positions)])
                self.outbox.add_many(connection, "OrderPlaced",
                                     [placed for _, _, (placed, _) in new],
                                     correlation_ids=[order["correlation_id"]
                                                      for _, order, _ in new],
                                     traceparents=[traceparent
                                                   for _, _, (_, traceparent) in new])
            for index, order, _ in new:
                if log.isEnabledFor(logging.DEBUG):  # as inventory's: no binding per order else
                    with log_context(order_id=order["order_id"],
                                     correlation_id=order["correlation_id"]):
                        log.debug("order placed: %s x %s", order["quantity"], order["item"])
                outcomes[index] = _as_dict(order)
            return
        except IntegrityError:
            # an order id or idempotency key stored before (a repeated call, a redelivered
            # request): everything was rolled back; again order by order, finding the repeats
            try:
                with self.db.transaction() as connection:
                    for index, order, placed in new:
                        outcomes[index] = self._place_or_refuse(connection, order, placed)
                return
            except Exception:
                log.warning("placing %d orders found a repeat and failed", len(new),
                            exc_info=True)
        except Exception:
            log.warning("placing %d orders at once failed", len(new), exc_info=True)
        # An error no order is refused for: maybe one order's fault, and it must not fail the
        # others. Alone, each order commits or fails by itself.
        for index, order, placed in new:
            outcomes[index] = self._place_alone(order, placed)

    def _place_alone(self, order, placed):
        """The stored order, or the exception that refused or failed it, in a transaction of
        its own."""
        try:
            with self.db.transaction() as connection:
                return self._place_or_refuse(connection, order, placed)
        except Exception as exc:
            log.exception("placing order %r failed", order["order_id"])
            return exc

    def _place_or_refuse(self, connection, order, placed):
        try:
            return self._place_one(connection, order, placed)
        except OrderConflict as exc:
            return exc

    def _new_order(self, now, item, quantity, order_id=None, idempotency_key=None,
                   correlation_id=None):
        """The row of a new order and its OrderPlaced payload; InvalidMessage if that payload
        is not a valid OrderPlaced."""
        order = {
            "order_id": order_id or new_order_id(), "item": item, "quantity": quantity,
            "status": PENDING, "reason": None, "idempotency_key": idempotency_key,
            "correlation_id": usable(correlation_id) or self.correlation(),
            "created_at": now, "updated_at": now,
        }
        placed = {"order_id": order["order_id"], "item": item, "quantity": quantity}
        self.outbox.check("OrderPlaced", placed)
        return order, placed

    def _place_one(self, connection, order, placed_and_traceparent):
        placed, traceparent = placed_and_traceparent
        # insert first: a racing duplicate waits on the unique keys instead of slipping
        # between a check and an insert
        position, = next_positions(connection, orders.c.position, 1)
        if not insert_once(connection, orders, **order, position=position):
            return _as_dict(_existing(connection, order["order_id"], order["idempotency_key"],
                                      order["item"], order["quantity"]))
        self.outbox.add(connection, "OrderPlaced", placed,
                        correlation_id=order["correlation_id"], traceparent=traceparent)
        return _as_dict(order)

    @rpc
    def get_order(self, order_id):
        with self.db.transaction() as connection:
            row = connection.execute(select(orders).where(orders.c.order_id == order_id)).first()
        return None if row is None else _as_dict(row)

    @rpc
    def list_orders(self, limit=None, cursor=None, status=None, item=None):
        """One page of the orders, in the order they were stored (see
        :mod:`nameko_topology.pages`): ``{"items": [order, ...], "next": cursor or None}``.

        ``limit``: 1 to 1,000 orders (default 100); ``cursor``: a page's ``next``; ``status``
        and ``item``: only the orders with that status or item.
        """
        limit, after = page_size(limit), cursor_position(cursor)
        query = select(orders)
        if status is not None:
            if status not in STATUSES:
                raise InvalidMessage(f"status must be one of {', '.join(STATUSES)}, "
                                     f"got {status!r}")
            query = query.where(orders.c.status == status)
        if item is not None:
            if not isinstance(item, str):
                raise InvalidMessage(f"item must be a string, got {item!r}")
            query = query.where(orders.c.item == item)
        with self.db.transaction() as connection:
            return read_page(connection, query, orders.c.position, after, limit, item=_as_dict)

    @handle("order_status_reserved_queue", batch_size=HANDLER_BATCH_SIZE)
    def on_inventory_reserved(self, events):
        self._settle([(event["order_id"], CONFIRMED, None) for event in events])

    @handle("order_status_failed_queue", batch_size=HANDLER_BATCH_SIZE)
    def on_inventory_failed(self, events):
        self._settle([(event["order_id"], REJECTED, event["reason"]) for event in events])

    def _settle(self, outcomes):
        """Move each ``(order_id, status, reason)`` order of ``outcomes`` out of PENDING, in one
        transaction: one statement run for all of them."""
        now = time.time()
        with self.db.transaction() as connection:
            connection.execute(SETTLE, [
                {"settled_order_id": order_id, "new_status": status, "new_reason": reason,
                 "now": now}
                for order_id, status, reason in outcomes])


PLACE_ORDER_ARGUMENTS = {
    "item", "quantity", "order_id", "idempotency_key", "correlation_id", "traceparent",
}


def _check_arguments(request):
    """Raise InvalidMessage unless ``request`` holds place_order's arguments (item and quantity
    at least)."""
    unknown = sorted(set(request) - PLACE_ORDER_ARGUMENTS)
    missing = sorted({"item", "quantity"} - set(request))
    if unknown or missing:
        raise InvalidMessage("place_order arguments: " + "; ".join(
            [f"unknown {name!r}" for name in unknown] + [f"{name!r} missing" for name in missing]))


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
    for private in ("idempotency_key", "updated_at", "position"):
        data.pop(private, None)
    return data
