"""``nameko-topology export``: the topology in the formats other tools read.

- ``definitions``: RabbitMQ definitions JSON (:mod:`.definitions`);
- ``asyncapi``: an AsyncAPI 3.0 document (:mod:`.asyncapi`);
- ``mermaid``, ``dot``, ``svg``: the routing graph as a diagram (:mod:`.diagram`).

The services shown are the queues' ``consumer:`` and the messages' ``publisher:`` in the file,
so the file stays the one source: a test checks them against the services' ``@handle``.
"""
import json

from kombu.utils.url import url_to_parts


class ExportError(Exception):
    """A format that cannot be written here (``svg`` without Graphviz)."""


def export(topology, format, amqp_uri="amqp://localhost/", vhost=None):
    """``topology`` in ``format`` as text; ``vhost`` defaults to the one of ``amqp_uri``."""
    from nameko_topology.export import asyncapi, definitions, diagram

    if vhost is None:
        vhost = url_to_parts(amqp_uri)[5] or "/"
    if format == "definitions":
        return _json(definitions.definitions(topology, vhost))
    if format == "asyncapi":
        return _json(asyncapi.document(topology, amqp_uri, vhost))
    if format == "mermaid":
        return diagram.mermaid(topology)
    if format == "dot":
        return diagram.dot(topology)
    if format == "svg":
        return diagram.svg(topology)
    raise ExportError(f"unknown format {format!r}")


def _json(document):
    return json.dumps(document, indent=2) + "\n"
