"""The inventory service: reserves stock for each placed order, exactly once per order."""
import json
import logging
import os
import time
from itertools import groupby

from nameko.extensions import DependencyProvider
from sqlalchemy import (
    BigInteger, CheckConstraint, Column, Float, Index, Integer, MetaData, String, Table, bindparam,
    select, update,
)
from sqlalchemy.exc import IntegrityError

from nameko_services import HANDLER_BATCH_SIZE, migrations
from nameko_services.columns import TruncatedString
from nameko_topology import (
    Correlation, Database, HealthCheck, Outbox, handle, insert_once, rpc,
)
from nameko_topology.database import database_of
from nameko_topology.logcontext import log_context
from nameko_topology.pages import cursor_position, page_size, read_page
from nameko_topology.positions import next_positions

log = logging.getLogger(__name__)

metadata = MetaData()

stock = Table(
    "inventory_stock", metadata,
    Column("item", String(100), primary_key=True),
    Column("quantity", Integer, nullable=False),
    # the last line of defence: no transaction can commit a negative stock
    CheckConstraint("quantity >= 0", name="inventory_stock_not_negative"),
)

# the inbox: one row per order ever handled, whatever its outcome
processed = Table(
    "inventory_processed", metadata,
    Column("order_id", String(100), primary_key=True),
    Column("outcome", String(20), nullable=False),
    Column("reason", TruncatedString(500)),
    Column("processed_at", Float, nullable=False),
    # commit order (nameko_topology.positions): GET /processed pages by it and skips no order
    Column("position", BigInteger, nullable=False),
    Index("inventory_processed_position", "position", unique=True),
)

INITIAL_STOCK_ENV = "INITIAL_STOCK"
DEFAULT_INITIAL_STOCK = {"widget-A": 100, "widget-B": 50, "gadget-X": 25, "gizmo-Z": 10}


# one conditional UPDATE: checking and taking stock cannot interleave with another order's
RESERVE = (
    update(stock)
    .where(stock.c.item == bindparam("want_item"), stock.c.quantity >= bindparam("want_quantity"))
    .values(quantity=stock.c.quantity - bindparam("want_quantity"))
    .returning(stock.c.quantity)
)

RECORD_PROCESSED = processed.insert()

# which of a batch's order ids the inbox holds already
ALREADY_PROCESSED = select(processed.c.order_id).where(
    processed.c.order_id.in_(bindparam("order_ids", expanding=True)))


class InitialStockError(Exception):
    pass


class _ProcessedMeanwhile(Exception):
    """Another instance committed an order of this transaction's batch after the batch looked
    it up in the inbox: everything the batch did is rolled back."""


def _event(order, **fields):
    """The payload of an InventoryReserved (``remaining``) or InventoryFailed (``reason``)
    event for ``order``."""
    return {"order_id": order["order_id"], "item": order["item"],
            "quantity": order["quantity"], **fields}


def parse_initial_stock(text):
    """The stock map in ``INITIAL_STOCK``: a JSON object of item name -> non-negative integer."""
    if text is None or not text.strip():
        return dict(DEFAULT_INITIAL_STOCK)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InitialStockError(f"{INITIAL_STOCK_ENV} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InitialStockError(f"{INITIAL_STOCK_ENV} must be a JSON object of item -> quantity")
    for item, quantity in value.items():
        if not item.strip() or len(item) > 100:
            raise InitialStockError(
                f"{INITIAL_STOCK_ENV}: item names must be 1 to 100 characters, got {item!r}")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
            raise InitialStockError(
                f"{INITIAL_STOCK_ENV}: quantity of {item!r} must be an integer >= 0, "
                f"got {quantity!r}")
    return value


class InitialStock(DependencyProvider):
    """Seeds items missing from the stock table from ``INITIAL_STOCK`` at start-up.

    Items already stored keep their stock: a restart must not undo reservations.
    """

    def __init__(self, database="db"):
        self.database_attr = database

    def setup(self):
        initial = parse_initial_stock(os.environ.get(INITIAL_STOCK_ENV))
        database = database_of(self.container, self.database_attr, "InitialStock")
        database.create(metadata)
        with database.transaction() as connection:
            for item, quantity in initial.items():
                insert_once(connection, stock, item=item, quantity=quantity)


class InventoryService(HealthCheck):
    name = "inventory"

    db = Database(metadata, migrations=migrations.of("inventory"))
    outbox = Outbox("db")
    initial_stock = InitialStock("db")
    correlation = Correlation()

    @handle("order_placed_queue", batch_size=HANDLER_BATCH_SIZE,
            expected_exceptions=_ProcessedMeanwhile)
    def on_order_placed(self, orders):
        """Reserve stock for each order not handled before, all in one transaction."""
        try:
            with self.db.transaction() as connection:
                self._reserve(connection, self._unprocessed(connection, orders))
        except _ProcessedMeanwhile:
            if len(orders) > 1:
                raise  # the others were rolled back with it: the framework runs each alone
            # a lone order that another instance handled first: a duplicate, nothing changes

    def _unprocessed(self, connection, orders):
        """``orders`` minus those the inbox holds and repeats (a redelivered copy in the same
        batch), ordered by item.

        By item, so that two instances' batches take the stock rows' locks in one order
        instead of deadlocking on them; the orders of one item, which compete for its stock,
        keep their order, so each gets what it would have got in a transaction of its own.
        """
        done = set(connection.execute(ALREADY_PROCESSED, {
            "order_ids": [order["order_id"] for order in orders]}).scalars())
        new = {}
        for order in orders:
            if order["order_id"] not in done:
                new.setdefault(order["order_id"], order)
        return sorted(new.values(), key=lambda order: order["item"])

    def _reserve(self, connection, orders):
        """Take each order's stock or find why not, stage the outcome events and record the
        orders in the inbox: a few statements for the whole batch."""
        reserved, failed = [], []  # (order, event) pairs
        for item, item_orders in groupby(orders, key=lambda order: order["item"]):
            self._take_stock(connection, item, list(item_orders), reserved, failed)
        # each event carries the correlation id of the order it answers: its cause
        self.outbox.add_many(connection, "InventoryReserved", [event for _, event in reserved],
                             causes=[order for order, _ in reserved])
        self.outbox.add_many(connection, "InventoryFailed", [event for _, event in failed],
                             causes=[order for order, _ in failed])
        if log.isEnabledFor(logging.DEBUG):
            for order, event in reserved + failed:
                with log_context(order_id=order["order_id"],
                                 correlation_id=self.correlation(order)):
                    log.debug("order %s", event.get("reason") or "reserved")
        now = time.time()
        inbox = [{"order_id": event["order_id"], "outcome": "reserved", "reason": None,
                  "processed_at": now} for _, event in reserved]
        inbox += [{"order_id": event["order_id"], "outcome": "failed",
                   "reason": event["reason"], "processed_at": now} for _, event in failed]
        # The inbox rows go in last, in the same transaction: if another instance committed
        # one of these orders since the lookup, its row is there and the batch rolls back.
        if not inbox:
            return
        # last, so the position lock is held from here to the commit only
        for row, position in zip(inbox, next_positions(connection, processed.c.position,
                                                       len(inbox))):
            row["position"] = position
        try:
            connection.execute(RECORD_PROCESSED, inbox)
        except IntegrityError as exc:
            raise _ProcessedMeanwhile(str(exc.orig)) from None

    def _take_stock(self, connection, item, orders, reserved, failed):
        """Reserve ``item`` for ``orders`` in their order; append each one's ``(order, event)``
        to ``reserved`` or ``failed``.

        Usually the stock covers them all, and one UPDATE takes it for all of them; otherwise
        each order tries alone, and those the stock cannot cover fail.
        """
        total = sum(order["quantity"] for order in orders)
        taken = connection.execute(RESERVE, {"want_item": item, "want_quantity": total}).first()
        if taken is not None:
            remaining = taken.quantity + total
            for order in orders:
                remaining -= order["quantity"]
                reserved.append((order, _event(order, remaining=remaining)))
            return
        for order in orders:
            taken = connection.execute(
                RESERVE, {"want_item": item, "want_quantity": order["quantity"]}).first()
            if taken is not None:
                reserved.append((order, _event(order, remaining=taken.quantity)))
                continue
            known = connection.execute(
                select(stock.c.quantity).where(stock.c.item == item)).first()
            failed.append((order, _event(order, reason=(
                f"unknown item {item!r}" if known is None else
                f"insufficient stock for {item!r}: {known.quantity} left, "
                f"{order['quantity']} requested"))))

    @rpc
    def get_inventory(self):
        with self.db.transaction() as connection:
            return {row.item: row.quantity
                    for row in connection.execute(select(stock).order_by(stock.c.item))}

    @rpc
    def list_processed(self, limit=None, cursor=None):
        """One page of the ids of the orders handled, in the order they were (see
        :mod:`nameko_topology.pages`): ``{"items": [order_id, ...], "next": cursor or None}``.

        ``limit``: 1 to 1,000 ids (default 100); ``cursor``: a page's ``next``.
        """
        limit, after = page_size(limit), cursor_position(cursor)
        with self.db.transaction() as connection:
            return read_page(connection, select(processed.c.order_id, processed.c.position),
                             processed.c.position, after, limit, item=lambda row: row.order_id)

