"""The pipeline services' schema migrations, one Alembic script directory per service
(see :mod:`nameko_topology.migrations`)."""
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def of(service):
    """The script directory of ``service``'s migrations."""
    return str(_HERE / service)
