"""Declaring a topology on the broker, standalone and as a nameko SharedExtension."""
import json
import logging
from functools import cached_property

from amqp.exceptions import PreconditionFailed
from kombu import Connection
from nameko.extensions import SharedExtension

from nameko_topology.compat import active_paths
from nameko_topology.constants import (
    AMQP_URI_CONFIG_KEY, DEFAULT_MANAGEMENT_PORT, DEFAULT_TOPOLOGY_FILE,
    MANAGEMENT_PORT_CONFIG_KEY, MANAGEMENT_URL_CONFIG_KEY, TOPOLOGY_FILE_CONFIG_KEY,
)
from nameko_topology.exceptions import TopologyMismatch
from nameko_topology.management import ManagementApi, ManagementError
from nameko_topology.model import load_topology
from nameko_topology.policies import apply_policies

log = logging.getLogger(__name__)



def declare_topology(connection, topology, management_port=None):
    """Declare every exchange, queue (retry queues included) and binding of ``topology``
    through ``connection``.

    Declaring is idempotent. If the broker already holds an entity declared with other
    arguments, nothing is changed or deleted and :class:`TopologyMismatch` is raised, naming
    the entity, the arguments the topology declares and those the broker holds (read from the
    management API on ``management_port``; default: ``RABBITMQ_MANAGEMENT_PORT`` from the
    environment, else 15672).
    """
    channel = connection.channel()
    try:
        for spec in topology.exchanges.values():
            _declare(connection, "exchange", spec.name, spec.to_kombu().bind(channel).declare,
                     _exchange_settings(spec), management_port)
        # the retry queues too: a retry is published to one, and dead-lettered back from it
        for spec in topology.declared_queues.values():
            # Queue.declare also declares the queue's bindings (and their exchanges again)
            _declare(connection, "queue", spec.name,
                     topology.kombu_queue(spec.name).bind(channel).declare,
                     _queue_settings(spec), management_port)
    finally:
        if channel.is_open:
            channel.close()


def declare_policies(amqp_uri, topology, management_url=None, management_port=None):
    """Create, or update in place, the policies of ``topology`` in the vhost of ``amqp_uri``
    through the management API at ``management_url`` (default: the AMQP host on
    ``management_port``); returns the names of those set. Other policies are left alone.

    :raises ManagementError: the API does not answer or refuses.
    """
    if not topology.policies:
        return []
    api = ManagementApi(amqp_uri, port=management_port, url=management_url)
    return apply_policies(api, topology.policies.values())


def _declare(connection, kind, name, declare, settings, management_port):
    try:
        declare()
    except PreconditionFailed as exc:
        raise TopologyMismatch(
            f"{kind} {name!r} already exists on the broker with different arguments; "
            f"nothing was changed or deleted.\n"
            f"  topology.yaml declares: {json.dumps(settings, sort_keys=True)}\n"
            f"  the broker holds:       {_broker_settings(connection, kind, name, management_port)}\n"
            f"  broker said: {exc.reply_text}\n"
            f"Delete the {kind} on the broker (its messages go with it) or change topology.yaml "
            f"to match."
        ) from None


def _exchange_settings(spec):
    return {"type": spec.type, "durable": spec.durable, "auto_delete": spec.auto_delete,
            "arguments": dict(spec.arguments)}


def _queue_settings(spec):
    return {"durable": spec.durable, "auto_delete": False, "arguments": spec.broker_arguments}


def _broker_settings(connection, kind, name, port):
    """What the broker holds for the entity, read from the management API if it answers.

    AMQP cannot tell a client an entity's arguments, so without the management plugin only
    the broker's 406 text (which names the first differing argument) is available.
    """
    try:
        # every node of a failover list (as_uri names only the one in use): management
        # ports may be given per node
        uri = ";".join(connection.alt) or connection.as_uri(include_password=True)
        entity = ManagementApi(uri, timeout=2, port=port).entity(kind, name)
    except ManagementError as exc:
        return f"unknown ({exc})"
    keys = ("type", "durable", "auto_delete", "arguments") if kind == "exchange" else (
        "durable", "auto_delete", "arguments")
    return json.dumps({key: entity.get(key) for key in keys}, sort_keys=True)


class TopologyDeclarer(SharedExtension):
    """Loads ``topology.yaml`` and declares it on the broker before any consumer starts.

    One instance per container, shared by every topology-aware entrypoint and dependency,
    which refer to it as a class attribute. ``setup()`` of all extensions finishes before any
    ``start()``, so the topology exists before the queue consumer declares and consumes.
    A file that does not validate, or a broker entity with other arguments, fails
    ``container.start()`` and with it ``nameko run``.

    The file is ``TOPOLOGY_FILE`` from the nameko config (default ``topology.yaml``).
    """

    @cached_property
    def topology(self):
        """The validated :class:`~nameko_topology.model.Topology`.

        Loaded on first use: other extensions' ``setup()`` may need it before ours has run.
        """
        path = self.container.config.get(TOPOLOGY_FILE_CONFIG_KEY) or DEFAULT_TOPOLOGY_FILE
        return load_topology(path)

    @property
    def amqp_uri(self):
        return self.container.config[AMQP_URI_CONFIG_KEY]

    def setup(self):
        with Connection(self.amqp_uri, connect_timeout=10) as connection:
            self.declare(connection)
        management_url = self.container.config.get(MANAGEMENT_URL_CONFIG_KEY)
        if management_url:
            # AMQP cannot set a policy; without the API's URL a service leaves them to `apply`
            declare_policies(self.amqp_uri, self.topology, management_url)
        log.info("declared topology %s", self.topology.source)
        log.info("library internals (nameko_topology.compat): %s", active_paths())

    def declare(self, connection):
        """Declare the whole topology through ``connection`` (also used after reconnects)."""
        declare_topology(connection, self.topology, management_port=self.container.config.get(
            MANAGEMENT_PORT_CONFIG_KEY, DEFAULT_MANAGEMENT_PORT))
