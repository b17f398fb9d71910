"""The orders table as it was before migrations: created where it is missing.

Revision ID: 0001
"""
from alembic import op
from sqlalchemy import Column, Float, Integer, MetaData, String, Table

revision = "0001"
down_revision = None


def upgrade():
    Table(
        "orders_orders", MetaData(),
        Column("order_id", String(100), primary_key=True),
        Column("item", String(100), nullable=False),
        Column("quantity", Integer, nullable=False),
        Column("status", String(20), nullable=False),
        Column("reason", String(500)),
        Column("idempotency_key", String(200), unique=True),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
    ).create(op.get_bind(), checkfirst=True)
