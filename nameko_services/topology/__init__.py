"""nameko-topology: the broker topology declared in ``topology.yaml``, and the nameko
extensions that use it.

- :func:`handle`: entrypoint consuming a declared queue (decode, validate, ack/retry/dead-letter)
- :class:`MessagePublisher`: dependency publishing a declared message type, confirmed
- :class:`Outbox`: dependency staging messages in the service's database transaction
- :class:`Database`: dependency giving the service its own SQL database
- :func:`load_topology`: read and validate a ``topology.yaml``
"""
from nameko_services.topology.consumer import Handle, handle
from nameko_services.topology.database import Database, insert_once
from nameko_services.topology.declarer import TopologyDeclarer, declare_topology
from nameko_services.topology.exceptions import (
    InvalidMessage, PermanentError, TopologyError, TopologyMismatch,
)
from nameko_services.topology.model import Topology, load_topology
from nameko_services.topology.outbox import Outbox
from nameko_services.topology.publisher import MessagePublisher

__all__ = [
    "Database", "Handle", "InvalidMessage", "MessagePublisher", "Outbox", "PermanentError",
    "Topology", "TopologyDeclarer", "TopologyError", "TopologyMismatch", "declare_topology",
    "handle", "insert_once", "load_topology",
]
