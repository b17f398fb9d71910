"""Each order's position in commit order, the key GET /orders pages by, and the indexes of its
filters. Orders stored before get theirs in the order they were created.

Revision ID: 0003
"""
from alembic import op
from sqlalchemy import BigInteger, Column

from nameko_services.migrations import number_rows

revision = "0003"
down_revision = "0002"


def upgrade():
    with op.batch_alter_table("orders_orders") as table:
        table.add_column(Column("position", BigInteger))
    number_rows("orders_orders", "order_id", "created_at, order_id")
    with op.batch_alter_table("orders_orders") as table:
        table.alter_column("position", existing_type=BigInteger, nullable=False)
    op.create_index("orders_orders_position", "orders_orders", ["position"], unique=True)
    op.create_index("orders_orders_status_position", "orders_orders", ["status", "position"])
    op.create_index("orders_orders_item_position", "orders_orders", ["item", "position"])
