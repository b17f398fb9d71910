"""Each notice's correlation id: that of its event, and so of its order's request.

Revision ID: 0002
"""
from alembic import op
from sqlalchemy import Column, String

revision = "0002"
down_revision = "0001"


def upgrade():
    with op.batch_alter_table("notifications_notifications") as table:
        table.add_column(Column("correlation_id", String(200)))
