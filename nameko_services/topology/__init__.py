"""nameko-topology: the broker topology declared in ``topology.yaml``, and the nameko
extensions that use it.

- :func:`handle`: entrypoint consuming a declared queue (decode, validate, ack/retry/dead-letter)
- :class:`MessagePublisher`: dependency publishing a declared message type, confirmed
- :class:`Outbox`: dependency staging messages in the service's database transaction
- :class:`Database`: dependency giving the service its own SQL database
- :func:`rpc`: nameko's RPC entrypoint, surviving a broker lost mid-call
- :func:`load_topology`: read and validate a ``topology.yaml``

Names are imported on first use, so that the ``nameko-topology`` CLI does not import nameko
and eventlet (and eventlet's deprecation warning) just to validate a file.
"""
from importlib import import_module

_HOMES = {
    "Handle": "consumer", "handle": "consumer",
    "Database": "database", "insert_once": "database", "insert_each_once": "database",
    "TopologyDeclarer": "declarer", "declare_topology": "declarer",
    "InvalidMessage": "exceptions", "PermanentError": "exceptions",
    "TopologyError": "exceptions", "TopologyMismatch": "exceptions",
    "Topology": "model", "load_topology": "model",
    "Outbox": "outbox",
    "MessagePublisher": "publisher",
    "Rpc": "rpc_entrypoint", "rpc": "rpc_entrypoint",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
