"""Each order's position in commit order, the key GET /orders pages by, and the indexes of its
filters. Orders stored before get theirs in the order they were created.

Revision ID: 0003
"""
from alembic import op

from nameko_services.migrations import add_position

revision = "0003"
down_revision = "0002"


def upgrade():
    add_position("orders_orders", "order_id", "created_at, order_id")
    op.create_index("orders_orders_status_position", "orders_orders", ["status", "position"])
    op.create_index("orders_orders_item_position", "orders_orders", ["item", "position"])
