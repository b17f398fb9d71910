"""Indexes for the relay's queries: its own claimed rows in id order, and the sweep for rows
whose claim is gone or out of date. Without them each runs through the whole table, which a
backlog makes large.

Revision ID: 0003
"""
from alembic import context, op

revision = "0003"
down_revision = "0002"


def upgrade():
    table = context.config.attributes["table"]
    op.create_index(f"{table}_claimed_by_id", table, ["claimed_by", "id"])
    op.create_index(f"{table}_claimed_at", table, ["claimed_at"])
