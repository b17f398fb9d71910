"""The stock and inbox tables as they were before migrations: created where they are missing.

Revision ID: 0001
"""
from alembic import op
from sqlalchemy import CheckConstraint, Column, Float, Integer, MetaData, String, Table

revision = "0001"
down_revision = None


def upgrade():
    metadata = MetaData()
    Table(
        "inventory_stock", metadata,
        Column("item", String(100), primary_key=True),
        Column("quantity", Integer, nullable=False),
        CheckConstraint("quantity >= 0", name="inventory_stock_not_negative"),
    )
    Table(
        "inventory_processed", metadata,
        Column("order_id", String(100), primary_key=True),
        Column("outcome", String(20), nullable=False),
        Column("reason", String(500)),
        Column("processed_at", Float, nullable=False),
    )
    metadata.create_all(op.get_bind(), checkfirst=True)
