from alembic import context

from nameko_topology.migrations import run_env

run_env(context)
