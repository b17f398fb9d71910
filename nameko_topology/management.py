"""A minimal client for RabbitMQ's management HTTP API, addressed by an AMQP URI.

AMQP cannot tell a client what arguments an existing entity has; the management API can. The
host and credentials come from the AMQP URI; the port is the config's
``RABBITMQ_MANAGEMENT_PORT`` (default 15672), or the environment variable of that name for the
CLI and the test helpers (:func:`port_from_environment`).
"""
import base64
import json
import os
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit, urlunsplit

from kombu.utils.url import url_to_parts

from nameko_topology.constants import DEFAULT_MANAGEMENT_PORT, MANAGEMENT_PORT_CONFIG_KEY



def port_from_environment():
    """``RABBITMQ_MANAGEMENT_PORT`` from the environment, else the default: for the CLI and
    the test helpers, which have no container config."""
    return int(os.environ.get(MANAGEMENT_PORT_CONFIG_KEY, DEFAULT_MANAGEMENT_PORT))


class ManagementError(Exception):
    pass


class ManagementApi:
    """Calls ``/api/...`` of the broker at ``amqp_uri``; ``vhost`` is the URI's virtual host."""

    def __init__(self, amqp_uri, timeout=5, port=None, url=None):
        scheme, host, amqp_port, user, password, vhost, _ = url_to_parts(amqp_uri)
        port = port_from_environment() if port is None else port
        self.base_url = f"http://{host or 'localhost'}:{port}/api"
        if url:  # ``http(s)://[user:password@]host:port[/prefix]``: the API is at <url>/api
            parts = urlsplit(url)
            user, password = parts.username or user, parts.password or password
            self.base_url = urlunsplit(parts._replace(netloc=parts.hostname + (
                f":{parts.port}" if parts.port else ""))).rstrip("/").removesuffix("/api") + "/api"
        self.vhost = vhost or "/"
        self.timeout = timeout
        self.user = user or "guest"
        #: the broker's AMQP URI without a virtual host
        self.server_uri = (f"{scheme}://{quote(self.user, safe='')}:"
                            f"{quote(password or 'guest', safe='')}@{host}:{amqp_port or 5672}")
        credentials = f"{user or 'guest'}:{password or 'guest'}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode()

    def path(self, *parts):
        """``/part/part`` with each part URL-quoted (vhost ``/`` becomes ``%2F``)."""
        return "/" + "/".join(quote(str(part), safe="") for part in parts)

    def request(self, method, path, body=None):
        request = urllib.request.Request(
            self.base_url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self._authorization, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            raise ManagementError(
                f"{method} {self.base_url}{path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except OSError as exc:
            raise ManagementError(
                f"{method} {self.base_url}{path}: {exc} (is RabbitMQ's management plugin on? "
                "`rabbitmq-plugins enable rabbitmq_management`; `make broker` does it for a "
                "local broker)") from None
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
