"""The trace context of the work that staged each message (tracing.py).

Revision ID: 0002
"""
from alembic import context, op
from sqlalchemy import Column, String

revision = "0002"
down_revision = "0001"


def upgrade():
    with op.batch_alter_table(context.config.attributes["table"]) as table:
        table.add_column(Column("traceparent", String(64)))
