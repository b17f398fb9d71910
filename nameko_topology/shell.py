"""``nameko-topology shell``: nameko's interactive shell, with the topology at hand.

Beside nameko's ``n.rpc``, ``n.dispatch_event`` and ``n.config``, the ``n`` module has
``n.topology``, ``n.publish(message_type, payload)`` (checked against the topology, confirmed),
``n.queues()`` (depth and consumers of every declared queue) and ``n.dead_letters(limit=10)``
(read without removing anything).
"""
import sys

import yaml
from kombu import Connection
from nameko.amqp.publish import Publisher
from nameko.cli.main import setup_yaml_parser
from nameko.cli.shell import ShellRunner, make_nameko_helper

from nameko_topology.constants import (
    AMQP_URI_CONFIG_KEY, DEFAULT_TOPOLOGY_FILE, TOPOLOGY_FILE_CONFIG_KEY,
)
from nameko_topology.dead_letters import dead_letter_queue, peek
from nameko_topology.messages import outgoing
from nameko_topology.model import load_topology
from nameko_topology.uris import redact


def load_config(path):
    """The nameko config file at ``path``, with ``${VAR:default}`` resolved as ``nameko run``
    resolves it."""
    setup_yaml_parser()
    with open(path) as file:
        return yaml.safe_load(file)


def make_helper(config):
    """nameko's shell helper module ``n`` for ``config``, plus the topology's helpers."""
    n = make_nameko_helper(config)
    amqp_uri = config[AMQP_URI_CONFIG_KEY]
    topology = load_topology(config.get(TOPOLOGY_FILE_CONFIG_KEY) or DEFAULT_TOPOLOGY_FILE)
    publisher = Publisher(amqp_uri, use_confirms=True, mandatory=True)

    def publish(message_type, payload, **properties):
        """Publish ``payload`` as a ``message_type`` message, checked against the topology,
        persistent and confirmed; returns its message id."""
        message = outgoing(topology.message(message_type), payload,
                           message_id=properties.pop("message_id", None),
                           correlation_id=properties.pop("correlation_id", None))
        publisher.publish(message.pop("body"), **message, **properties)
        return message["message_id"]

    def queues():
        """``{queue: {"messages": ready, "consumers": n}}`` for every declared queue."""
        with Connection(amqp_uri) as connection:
            channel = connection.default_channel
            return {name: dict(zip(("messages", "consumers"),
                                   channel.queue_declare(name, passive=True)[1:]))
                    for name in topology.queues}

    def dead_letters(limit=10, queue=None):
        """The first ``limit`` dead letters, each with its ``reason``; nothing is removed."""
        with Connection(amqp_uri) as connection:
            return peek(connection, queue or dead_letter_queue(topology), limit)

    n.topology, n.publish, n.queues, n.dead_letters = topology, publish, queues, dead_letters
    n.__doc__ += __doc__
    return n


def run(config_path, interface=None):
    """Start the shell on the config file at ``config_path``."""
    config = load_config(config_path)
    banner = (f"nameko-topology shell, Python {sys.version.split()[0]}\n"
              f"Broker: {redact(config[AMQP_URI_CONFIG_KEY])} (from {config_path})\n"
              f"n.rpc, n.publish, n.queues(), n.dead_letters(), n.topology")
    ShellRunner(banner, {"n": make_helper(config)}).start_shell(name=interface)
