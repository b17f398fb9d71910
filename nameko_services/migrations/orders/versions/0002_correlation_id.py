"""Each order's correlation id: its request's X-Request-ID (NULL for older orders).

Revision ID: 0002
"""
from alembic import op
from sqlalchemy import Column, String

revision = "0002"
down_revision = "0001"


def upgrade():
    with op.batch_alter_table("orders_orders") as table:
        table.add_column(Column("correlation_id", String(200)))
