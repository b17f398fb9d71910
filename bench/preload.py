"""Stored orders for ``bench.scale``: written straight into the services' tables, before the
stack starts, as if the pipeline had handled them.

Each of the N orders gets its row in ``orders_orders`` (CONFIRMED, or REJECTED for about one in
twenty, with the reason inventory gives), its inbox row in ``inventory_processed`` and its
notice in ``notifications_notifications``; the tables are made by the services' own migrations,
so their schema is exactly what the services make. The orders' ids are UUIDv7s, as the orders
service makes them, with times that increase over the past year, ``created_at`` the same. After
them come the backlog's orders: PENDING rows only, whose OrderPlaced ``bench.scale`` publishes
later. Rows are inserted with executemany, :data:`CHUNK` at a time, a few chunks a transaction.
"""
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from nameko_services import inventory, migrations, notifications, orders
from nameko_topology.database import DatabaseHandle

CHUNK = 10_000               # rows of one executemany
CHUNKS_PER_TRANSACTION = 10  # SQLite writes its WAL out at commit: large, but few, commits
ITEMS = ("widget-A", "widget-B", "gadget-X", "gizmo-Z")
REJECTED_SHARE = 0.05
SPAN_S = 365 * 86400         # the stored orders' created_at lie over this past span


@dataclass
class Preloaded:
    """What a preload wrote, and how long it took."""
    orders: int                     # settled orders (with inbox rows and notices)
    rows: dict                      # table -> rows written
    seconds: float
    #: route -> the page key of its last stored row (bench.load's Target.after)
    after: dict
    sample_ids: list = field(default_factory=list)  # random settled order ids
    #: the PENDING orders after them, in order: {order_id, item, quantity, correlation_id}
    backlog: list = field(default_factory=list)

    @property
    def rows_per_s(self):
        return round(sum(self.rows.values()) / self.seconds) if self.seconds else None


def database_url(service, data_dir, server_url=None):
    """The URL a service's database has in a stack: ``server_url`` (its DATABASE_URL) if
    given, else ``<data_dir>/<service>.sqlite3``."""
    if server_url:
        return server_url
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(data_dir).resolve() / service}.sqlite3"


def service_handle(service, metadata, url):
    """A :class:`DatabaseHandle` on ``url`` with ``service``'s tables made by its migrations,
    as its ``Database`` dependency makes them at start-up."""
    handle = DatabaseHandle(url)
    handle.migrate(metadata, migrations.of(service), f"{service}_alembic_version")
    handle.create(metadata)
    return handle


def order_id_at(ms, rng):
    """A UUIDv7 in hex (as ``nameko_services.orders.new_order_id``) of Unix time ``ms``."""
    value = ((ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
             | 0b10 << 62 | rng.getrandbits(62))
    return f"{value:032x}"


def positioned(table, rows, first):
    """``rows`` numbered from ``first`` in the table's ``position`` column (commit order),
    where the table has one."""
    if "position" in table.c:
        for position, row in enumerate(rows, first):
            row["position"] = position
    return rows


class _Writer:
    """The rows of one chunk of orders, made from one random stream."""

    def __init__(self, n, backlog, sample, seed):
        self.n, self.total = n, n + backlog
        self.rng = random.Random(seed)
        self.step = SPAN_S / max(self.total, 1)
        self.start = time.time() - SPAN_S - 60
        self.sample = set(random.Random(seed + 1).sample(range(n), min(sample, n)))
        self.sample_ids, self.backlog = [], []

    def chunk(self, first, last):
        """(order rows, inbox rows, notice rows) of orders ``first`` to ``last - 1``."""
        rng = self.rng
        order_rows, inbox_rows, notice_rows = [], [], []
        for i in range(first, last):
            created = self.start + (i + rng.random()) * self.step
            order_id = order_id_at(int(created * 1000), rng)
            item, quantity = ITEMS[rng.randrange(len(ITEMS))], 1 + rng.randrange(5)
            correlation_id = f"{rng.getrandbits(128):032x}"
            order = {"order_id": order_id, "item": item, "quantity": quantity,
                     "status": orders.PENDING, "reason": None, "idempotency_key": None,
                     "correlation_id": correlation_id, "created_at": created,
                     "updated_at": created}
            order_rows.append(order)
            if i >= self.n:
                self.backlog.append({"order_id": order_id, "item": item, "quantity": quantity,
                                     "correlation_id": correlation_id})
                continue
            if i in self.sample:
                self.sample_ids.append(order_id)
            settled = created + 0.05
            if rng.random() < REJECTED_SHARE:
                reason = (f"insufficient stock for {item!r}: 0 left, {quantity} requested")
                order.update(status=orders.REJECTED, reason=reason, updated_at=settled)
                inbox_rows.append({"order_id": order_id, "outcome": "failed",
                                   "reason": reason, "processed_at": created + 0.02})
                notice_rows.append(_notice(order, notifications.FAILURE,
                                           f"Order {order_id} could not be fulfilled: {reason}"))
            else:
                order.update(status=orders.CONFIRMED, updated_at=settled)
                inbox_rows.append({"order_id": order_id, "outcome": "reserved",
                                   "reason": None, "processed_at": created + 0.02})
                notice_rows.append(_notice(order, notifications.CONFIRMATION,
                                           f"Order {order_id} confirmed: {quantity} x {item} "
                                           f"reserved"))
        return order_rows, inbox_rows, notice_rows


def _notice(order, kind, message):
    return {"order_id": order["order_id"], "kind": kind, "item": order["item"],
            "quantity": order["quantity"], "message": message,
            "correlation_id": order["correlation_id"], "created_at": order["created_at"] + 0.04}


def preload(data_dir, n, backlog=0, server_url=None, sample=200, seed=17):
    """Write ``n`` settled orders and then ``backlog`` PENDING ones into the databases of a
    stack whose DATA_DIR is ``data_dir`` (``server_url``: its DATABASE_URL, if it has one);
    ``sample`` of the settled orders' ids, picked at random, are returned with them."""
    began = time.perf_counter()
    tables = {"orders": (orders.metadata, orders.orders),
              "inventory": (inventory.metadata, inventory.processed),
              "notifications": (notifications.metadata, notifications.notifications)}
    handles = {service: service_handle(service, metadata, database_url(service, data_dir,
                                                                        server_url))
               for service, (metadata, _) in tables.items()}
    writer = _Writer(n, backlog, sample, seed)
    rows = dict.fromkeys((table.name for _, table in tables.values()), 0)
    per_transaction = CHUNK * CHUNKS_PER_TRANSACTION
    try:
        for first in range(0, n + backlog, per_transaction):
            with ExitStack() as transactions:
                connections = {service: transactions.enter_context(handle.transaction())
                               for service, handle in handles.items()}
                for start in range(first, min(first + per_transaction, n + backlog), CHUNK):
                    chunk = writer.chunk(start, min(start + CHUNK, n + backlog))
                    for (service, (_, table)), chunk_rows in zip(tables.items(), chunk):
                        if not chunk_rows:
                            continue
                        # orders are numbered from the chunk's start; the others hold the
                        # settled orders only, which come first: the same numbers
                        connections[service].execute(
                            table.insert(), positioned(table, chunk_rows, start + 1))
                        rows[table.name] += len(chunk_rows)
        with handles["notifications"].transaction() as connection:
            last_notice = connection.execute(
                select(func.coalesce(func.max(notifications.notifications.c.id), 0))).scalar()
    finally:
        for handle in handles.values():
            handle.engine.dispose()
    return Preloaded(orders=n, rows=rows,
                     seconds=round(time.perf_counter() - began, 2),
                     after={"/orders": n + backlog, "/processed": n,
                            "/notifications": last_notice},
                     sample_ids=writer.sample_ids, backlog=writer.backlog)
