"""The outbox table as it was before migrations: created where it is missing.

Revision ID: 0001
"""
from alembic import context, op
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

revision = "0001"
down_revision = None


def upgrade():
    Table(
        context.config.attributes["table"], MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("message_id", String(64), nullable=False, unique=True),
        Column("message_type", String(200), nullable=False),
        Column("exchange", String(255), nullable=False),
        Column("routing_key", String(255), nullable=False),
        Column("correlation_id", String(200), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("claimed_by", String(64)),
        Column("claimed_at", Float),
        Column("attempts", Integer, nullable=False, default=0),
    ).create(op.get_bind(), checkfirst=True)
