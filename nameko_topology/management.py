"""A minimal client for RabbitMQ's management HTTP API, addressed by an AMQP URI.

AMQP cannot tell a client what arguments an existing entity has; the management API can. The
host and credentials come from the AMQP URI; the port is the config's
``RABBITMQ_MANAGEMENT_PORT`` (default 15672), or the environment variable of that name for the
CLI and the test helpers (:func:`port_from_environment`).

A failover URI (``amqp://...@h1/v;amqp://...@h2/v``) names the nodes of a cluster, and every
node's management API answers for the whole cluster: a request goes to the first node that
answers. ``RABBITMQ_MANAGEMENT_PORT`` is then one port for every node, or one per node,
``;``-separated in the URI's order (``15673;15674;15675``: several nodes on one host).
"""
import base64
import json
import os
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit, urlunsplit

from kombu.utils.url import url_to_parts

from nameko_topology.constants import DEFAULT_MANAGEMENT_PORT, MANAGEMENT_PORT_CONFIG_KEY
from nameko_topology.uris import nodes



def port_from_environment():
    """``RABBITMQ_MANAGEMENT_PORT`` from the environment, else the default: for the CLI and
    the test helpers, which have no container config."""
    return os.environ.get(MANAGEMENT_PORT_CONFIG_KEY, DEFAULT_MANAGEMENT_PORT)


def _ports(port, count):
    """``count`` management ports from ``port``: an int, or ``;``-separated ones."""
    ports = [int(part) for part in str(port).split(";") if part.strip()]
    if len(ports) not in (1, count):
        raise ValueError(f"{MANAGEMENT_PORT_CONFIG_KEY} names {len(ports)} ports for {count} "
                         f"broker nodes; give one, or one per node")
    return ports * count if len(ports) == 1 else ports


def _basic(user, password):
    credentials = f"{user or 'guest'}:{password or 'guest'}".encode()
    return "Basic " + base64.b64encode(credentials).decode()


class ManagementError(Exception):
    pass


class ManagementApi:
    """Calls ``/api/...`` of the broker at ``amqp_uri``; ``vhost`` is the URI's virtual host."""

    def __init__(self, amqp_uri, timeout=5, port=None, url=None):
        uris = nodes(amqp_uri)
        ports = _ports(port_from_environment() if port is None else port, len(uris))
        self._nodes, server_uris = [], []  # (API URL, Authorization) per node
        for uri, port in zip(uris, ports):
            scheme, host, amqp_port, user, password, vhost, _ = url_to_parts(uri)
            self._nodes.append((f"http://{host or 'localhost'}:{port}/api",
                                _basic(user, password)))
            server_uris.append(f"{scheme}://{quote(user or 'guest', safe='')}:"
                               f"{quote(password or 'guest', safe='')}@{host}:{amqp_port or 5672}")
        # vhost and user: the first node's, as for kombu
        _, _, _, user, password, vhost, _ = url_to_parts(uris[0])
        if url:  # ``http(s)://[user:password@]host:port[/prefix]``: the API is at <url>/api
            parts = urlsplit(url)
            user, password = parts.username or user, parts.password or password
            self._nodes = [(urlunsplit(parts._replace(netloc=parts.hostname + (
                f":{parts.port}" if parts.port else ""))).rstrip("/").removesuffix("/api")
                + "/api", _basic(user, password))]
        #: the first node's API: where requests go while it answers
        self.base_url = self._nodes[0][0]
        self.vhost = vhost or "/"
        self.timeout = timeout
        self.user = user or "guest"
        #: the broker's AMQP URI without a virtual host (a failover list for several nodes)
        self.server_uri = ";".join(server_uris)

    def path(self, *parts):
        """``/part/part`` with each part URL-quoted (vhost ``/`` becomes ``%2F``)."""
        return "/" + "/".join(quote(str(part), safe="") for part in parts)

    def request(self, method, path, body=None):
        """Send the request to the first node that answers; :class:`ManagementError` if it
        refuses the request, or if no node answers."""
        for base_url, authorization in self._nodes:
            try:
                return self._request(base_url, authorization, method, path, body)
            except OSError as exc:
                unreachable = exc
        raise ManagementError(
            f"{method} {self.base_url}{path}: {unreachable} (is RabbitMQ's management plugin "
            "on? `rabbitmq-plugins enable rabbitmq_management`; `make broker` does it for a "
            "local broker)") from None

    def _request(self, base_url, authorization, method, path, body):
        request = urllib.request.Request(
            base_url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": authorization, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            raise ManagementError(
                f"{method} {base_url}{path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        return json.loads(data) if data else None

    def get(self, path):
        return self.request("GET", path)

    def entity(self, kind, name):
        """The exchange or queue ``name`` of this vhost as the broker describes it."""
        return self.get(self.path(f"{kind}s", self.vhost, name))

    # -- a whole vhost, for plan and apply (see plan.py, policies.py) ----------------------

    def vhost_entities(self, kind):
        """Every exchange, queue, binding or policy (``kind`` plural) of this vhost."""
        return self.get(self.path(kind, self.vhost))

    def policies(self):
        return self.vhost_entities("policies")

    def put_policy(self, name, settings):
        """Create or replace policy ``name`` with ``settings`` (pattern, apply-to, priority,
        definition)."""
        self.request("PUT", self.path("policies", self.vhost, name), settings)
