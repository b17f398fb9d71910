"""nameko-topology: the broker topology declared in ``topology.yaml``, and the nameko
extensions that use it.

- :func:`handle`: entrypoint consuming a declared queue (decode, validate, ack/retry/dead-letter)
- :class:`MessagePublisher`: dependency publishing a declared message type, confirmed
- :class:`Outbox`: dependency staging messages in the service's database transaction
- :class:`Database`: dependency giving the service its own SQL database
- :class:`Correlation`: dependency giving the correlation id of what a handler received
- :func:`rpc`: nameko's RPC entrypoint, surviving a broker lost mid-call
- :func:`load_topology`: read and validate a ``topology.yaml``

Test helpers live in :mod:`nameko_topology.testing`, a pytest plugin.
"""
import warnings

# nameko 2.14 runs on eventlet, which warns at import that it is deprecated: nothing a user of
# this framework can act on, and noise before every CLI command's output. Only the import made
# by this package, or by nameko on its behalf, is silenced; an application importing eventlet
# itself still sees it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated",
                        module=r"nameko(_topology)?\.")

from nameko_topology.handle import Handle, handle  # noqa: E402
from nameko_topology.correlation import Correlation
from nameko_topology.database import Database, insert_each_once, insert_once
from nameko_topology.declarer import TopologyDeclarer, declare_topology
from nameko_topology.exceptions import (
    InvalidMessage, PermanentError, TopologyError, TopologyMismatch,
)
from nameko_topology.health import HealthCheck
from nameko_topology.model import Topology, load_topology
from nameko_topology.outbox import Outbox
from nameko_topology.publisher import MessagePublisher
from nameko_topology.rpc_entrypoint import Rpc, rpc

__all__ = [
    "Correlation", "Database", "Handle", "HealthCheck", "InvalidMessage", "MessagePublisher", "Outbox", "PermanentError",
    "Rpc", "Topology", "TopologyDeclarer", "TopologyError", "TopologyMismatch",
    "declare_topology", "handle", "insert_each_once", "insert_once", "load_topology", "rpc",
]
