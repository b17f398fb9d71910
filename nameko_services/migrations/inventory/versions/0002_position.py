"""Each inbox row's position in commit order, the key GET /processed pages by. Rows stored
before get theirs in the order they were processed.

Revision ID: 0002
"""
from alembic import op
from sqlalchemy import BigInteger, Column

from nameko_services.migrations import number_rows

revision = "0002"
down_revision = "0001"


def upgrade():
    with op.batch_alter_table("inventory_processed") as table:
        table.add_column(Column("position", BigInteger))
    number_rows("inventory_processed", "order_id", "processed_at, order_id")
    with op.batch_alter_table("inventory_processed") as table:
        table.alter_column("position", existing_type=BigInteger, nullable=False)
    op.create_index("inventory_processed_position", "inventory_processed", ["position"],
                    unique=True)
