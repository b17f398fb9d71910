"""The notifications service: records one notice per order outcome."""
import logging
import time

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, UniqueConstraint, select

from nameko_services import HANDLER_BATCH_SIZE, migrations
from nameko_services.columns import TruncatedString
from nameko_topology import Correlation, Database, HealthCheck, handle, insert_each_once, rpc
from nameko_topology.logcontext import log_context
from nameko_topology.exceptions import InvalidMessage
from nameko_topology.messages import MAX_CORRELATION_ID_LENGTH
from nameko_topology.pages import page_size, read_page
from nameko_topology.positions import lock_positions

log = logging.getLogger(__name__)

metadata = MetaData()

notifications = Table(
    "notifications_notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("item", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("message", TruncatedString(1000), nullable=False),
    # that of the event, and so of the order's request
    Column("correlation_id", String(MAX_CORRELATION_ID_LENGTH)),
    Column("created_at", Float, nullable=False),
    # the inbox: a redelivered event finds its notice already there
    UniqueConstraint("order_id", "kind", name="notifications_one_per_order_and_kind"),
)

CONFIRMATION, FAILURE = "confirmation", "failure"


class NotificationsService(HealthCheck):
    name = "notifications"

    db = Database(metadata, migrations=migrations.of("notifications"))
    correlation = Correlation()

    @handle("inventory_reserved_queue", batch_size=HANDLER_BATCH_SIZE)
    def on_inventory_reserved(self, events):
        self._record(CONFIRMATION, [
            (event, f"Order {event['order_id']} confirmed: {event['quantity']} x "
                    f"{event['item']} reserved")
            for event in events])

    @handle("inventory_failed_queue", batch_size=HANDLER_BATCH_SIZE)
    def on_inventory_failed(self, events):
        self._record(FAILURE, [
            (event, f"Order {event['order_id']} could not be fulfilled: {event['reason']}")
            for event in events])

    def _record(self, kind, notices):
        """Record each ``(event, message)`` of ``notices`` unless its order has a notice of
        ``kind`` already, all in one transaction."""
        now = time.time()
        rows = [{"order_id": event["order_id"], "kind": kind, "item": event["item"],
                 "quantity": event["quantity"], "message": message,
                 "correlation_id": self.correlation(event), "created_at": now}
                for event, message in notices]
        with self.db.transaction() as connection:
            # the ids drawn by the insert are then in commit order: list_notifications' promise
            lock_positions(connection, notifications)
            insert_each_once(connection, notifications, rows)
        if log.isEnabledFor(logging.DEBUG):
            for row in rows:
                with log_context(order_id=row["order_id"], correlation_id=row["correlation_id"]):
                    log.debug("%s recorded", kind)

    @rpc
    def list_notifications(self, after=0, limit=None):
        """One page of the notices, in the order they were recorded, those with an ``id`` above
        ``after`` only: ``{"items": [notice, ...], "next": id or None}`` (see
        :mod:`nameko_topology.pages`); ``limit``: 1 to 1,000 notices (default 100).

        The ids increase in commit order, so a reader that passes the last id it saw (the
        page's ``next``) gets everything recorded since, and nothing twice.
        """
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidMessage(f"after must be an integer >= 0, got {after!r}")
        with self.db.transaction() as connection:
            return read_page(connection, select(notifications), notifications.c.id, after,
                             page_size(limit), item=_notice, cursor_of=int)


def _notice(row):
    return {"id": row.id, "order_id": row.order_id, "kind": row.kind, "item": row.item,
            "quantity": row.quantity, "message": row.message,
            "correlation_id": row.correlation_id, "created_at": row.created_at}
