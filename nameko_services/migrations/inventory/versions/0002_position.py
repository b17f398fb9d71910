"""Each inbox row's position in commit order, the key GET /processed pages by. Rows stored
before get theirs in the order they were processed.

Revision ID: 0002
"""
from nameko_services.migrations import add_position

revision = "0002"
down_revision = "0001"


def upgrade():
    add_position("inventory_processed", "order_id", "processed_at, order_id")
