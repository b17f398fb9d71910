"""A throwaway RabbitMQ virtual host per test, and what tests read from the broker."""
import json
import subprocess
import time
import uuid

from kombu import Connection, Exchange, Producer

from urllib.parse import quote

from nameko_topology.dead_letters import raw_message
from nameko_topology.management import ManagementApi, ManagementError
from nameko_topology.uris import nodes


def create_vhost(amqp_uri, name, management_port=None):
    """Create virtual host ``name`` on the broker of ``amqp_uri``, give the URI's user every
    right in it, and return its AMQP URI. ``management_port``: as ManagementApi's ``port``
    (default: ``RABBITMQ_MANAGEMENT_PORT``)."""
    api = ManagementApi(amqp_uri, port=management_port)
    api.request("PUT", api.path("vhosts", name))
    api.request("PUT", api.path("permissions", name, api.user),
                {"configure": ".*", "write": ".*", "read": ".*"})
    return ";".join(f"{node}/{quote(name, safe='')}" for node in nodes(api.server_uri))


def delete_vhost(amqp_uri, name=None, management_port=None):
    """Delete virtual host ``name`` (default: the one ``amqp_uri`` names) with everything in
    it; no error if it is gone."""
    api = ManagementApi(amqp_uri, port=management_port)
    name = api.vhost if name is None else name
    if name in ("", "/"):
        raise ValueError("refusing to delete the default vhost '/'")
    try:
        api.request("DELETE", api.path("vhosts", name))
    except ManagementError as exc:
        if "HTTP 404" not in str(exc):
            raise


def wait_for(condition, timeout=30.0, interval=0.05, description="condition"):
    """Poll ``condition()`` until it returns something truthy and return that; fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {description} "
                                 f"(last value: {value!r})")
        time.sleep(interval)


class TestVhost:
    """A virtual host of its own on the broker of ``base_uri``, so runs never share messages.
    ``management_port``: as ManagementApi's ``port`` (a cluster's nodes on one host each have
    one of their own: ``"15673;15674;15675"``)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, base_uri, prefix="nt_test", management_port=None):
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.base_uri = base_uri
        self.management_port = management_port

    def create(self):
        self.amqp_uri = create_vhost(self.base_uri, self.name, self.management_port)
        self.api = ManagementApi(self.amqp_uri, port=self.management_port)
        return self

    def delete(self):
        delete_vhost(self.amqp_uri, management_port=self.management_port)

    # -- reading the broker -------------------------------------------------------------------

    def depth(self, queue):
        """Messages ready in ``queue`` now (a passive declare: no statistics delay)."""
        return self._declare_passive(queue).message_count

    def consumers(self, queue):
        return self._declare_passive(queue).consumer_count

    def _declare_passive(self, queue):
        with Connection(self.amqp_uri) as connection:
            return connection.default_channel.queue_declare(queue, passive=True)

    def acked(self, queue):
        """How many deliveries from ``queue`` were acked so far (management statistics, which
        lag by up to one statistics interval but never run backwards)."""
        stats = self.api.get(self.api.path("queues", self.name, queue)).get("message_stats", {})
        return stats.get("ack", 0)

    def queues(self):
        """name -> queue as the management API describes it (durable, arguments, ...)."""
        return {q["name"]: q for q in self.api.get(self.api.path("queues", self.name))}

    def exchanges(self):
        return {e["name"]: e for e in self.api.get(self.api.path("exchanges", self.name))
                if e["name"] and not e["name"].startswith("amq.")}

    def bindings(self):
        """(exchange, queue, routing key) of every binding except the default exchange's."""
        return {(b["source"], b["destination"], b["routing_key"])
                for b in self.api.get(self.api.path("bindings", self.name)) if b["source"]}

    def take_messages(self, queue):
        """Remove and return every message in ``queue`` as dicts (body, headers, properties)."""
        messages = []
        with Connection(self.amqp_uri) as connection:
            channel = connection.channel()
            while True:
                message = channel.basic_get(queue, no_ack=True)
                if message is None:
                    return messages
                messages.append(raw_message(message))

    # -- acting on the broker -----------------------------------------------------------------

    def publish(self, exchange, routing_key, body, **properties):
        """Publish ``body`` (bytes/str as is, anything else as JSON) persistently, confirmed."""
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            properties.setdefault("content_type", "application/json")
        with Connection(self.amqp_uri, transport_options={"confirm_publish": True}) as conn:
            Producer(conn.default_channel).publish(
                body, exchange=Exchange(exchange, no_declare=True) if exchange else "",
                routing_key=routing_key, delivery_mode=2, **properties)

    def close_connections(self, reason="closed by test"):
        """Close every client connection in this vhost, as a broker-side fault would.

        rabbitmqctl, not the management API: the API lists a new connection only after its
        first statistics interval (5 s), so it would miss young connections.
        """
        subprocess.run(["rabbitmqctl", "close_all_connections", "-p", self.name, reason],
                       check=True, capture_output=True, timeout=60)
