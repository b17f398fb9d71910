"""The notifications table as it was before migrations: created where it is missing.

Revision ID: 0001
"""
from alembic import op
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, UniqueConstraint

revision = "0001"
down_revision = None


def upgrade():
    Table(
        "notifications_notifications", MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", String(100), nullable=False),
        Column("kind", String(20), nullable=False),
        Column("item", String(100), nullable=False),
        Column("quantity", Integer, nullable=False),
        Column("message", String(1000), nullable=False),
        Column("created_at", Float, nullable=False),
        UniqueConstraint("order_id", "kind", name="notifications_one_per_order_and_kind"),
    ).create(op.get_bind(), checkfirst=True)
