"""The whole broker restarted mid-stream: nothing lost, nothing applied twice.

This takes the broker away from everything on this machine, not just the test's vhost, so
tests/faults/conftest.py runs this file after every other test of the session. Whatever
happens, the broker is brought back (and waited for) before the test ends.
"""
import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
from kombu.utils.url import url_to_parts

from tests.faults.conftest import OrderStream, Pipeline, assert_recovered, stock_env
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.faults

ITEM = "widget-A"
BIG_STOCK = 100_000
BROKER_WAIT = 90  # seconds: the longest any step of stopping or starting the broker may take


class LocalBroker:
    """Stops and starts the RabbitMQ node on this machine (``rabbitmqctl``, ``rabbitmq-server``)
    and tells when its AMQP port and management API answer."""

    def __init__(self, amqp_uri):
        _, host, port, user, password, _, _ = url_to_parts(amqp_uri)
        self.host, self.port = host or "127.0.0.1", port or 5672
        self.management = (f"http://{self.host}:"
                           f"{os.environ.get('RABBITMQ_MANAGEMENT_PORT', '15672')}/api/overview")
        self.credentials = (user or "guest", password or "guest")

    @staticmethod
    def _ctl(*args, timeout=BROKER_WAIT, check=True):
        return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def os_pid(self):
        """The broker's Erlang VM process id, or None if the node does not answer."""
        result = self._ctl("eval", "os:getpid().", timeout=30, check=False)
        text = result.stdout.strip().strip('"')
        return int(text) if result.returncode == 0 and text.isdigit() else None

    def port_open(self):
        try:
            socket.create_connection((self.host, self.port), timeout=2).close()
        except OSError:
            return False
        return True

    def management_up(self):
        manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        manager.add_password(None, self.management, *self.credentials)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPBasicAuthHandler(manager))
        try:
            with opener.open(self.management, timeout=3) as response:
                return response.status == 200 and "rabbitmq_version" in json.load(response)
        except (OSError, ValueError):
            return False

    def stop(self):
        """Stop the node entirely (its VM exits) and wait until the process is gone."""
        pid = self.os_pid()
        assert pid is not None, "the broker does not answer rabbitmqctl"
        self._ctl("stop")
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=BROKER_WAIT,
                 interval=0.2, description=f"the broker's VM (pid {pid}) to exit")
        assert not self.port_open()

    def ensure_running(self):
        """Start the node if it is down (or only its app is stopped); wait until the AMQP
        port and the management API answer. Safe to call whatever state it is in."""
        if not self.port_open():
            if self.os_pid() is None:
                # -detached returns at once; as root the script runs the node as rabbitmq
                subprocess.run(["rabbitmq-server", "-detached"], capture_output=True,
                               timeout=BROKER_WAIT, check=True)
            else:
                # the VM runs but the app does not (a stop_app, or a node still booting)
                self._ctl("start_app", check=False)
        wait_for(self.port_open, timeout=BROKER_WAIT, interval=0.5,
                 description=f"the broker's AMQP port {self.host}:{self.port}")
        wait_for(self.management_up, timeout=BROKER_WAIT, interval=0.5,
                 description=f"the management API {self.management}")


@pytest.fixture
def broker(rabbit_base_uri):
    broker = LocalBroker(rabbit_base_uri)
    if broker.host not in ("localhost", "127.0.0.1", "::1"):
        pytest.skip(f"restarts only a local broker, not {broker.host}")
    try:
        yield broker
    finally:
        broker.ensure_running()  # always: the rest of the machine needs it


def test_a_broker_restart_mid_stream_loses_nothing_and_repeats_nothing(
        vhost, make_stack, broker):
    stack = make_stack(stock_env({ITEM: BIG_STOCK}))
    pipeline = Pipeline(stack.url, stack)
    # paced to last about 20s: stopping the broker takes seconds, and must land mid-stream
    stream = OrderStream(stack.url, 100, clients=2, pause=0.4, stack=stack).start()

    wait_for(lambda: stream.accepted >= 20, timeout=120, description="20 orders accepted")
    started = time.monotonic()
    broker.stop()
    accepted_when_down = stream.accepted
    # a client is refused while it is down (and retries with the same key)
    wait_for(lambda: stream.retries >= 1, timeout=30, description="a POST refused")
    broker.ensure_running()
    outage = time.monotonic() - started
    order_ids = stream.result()

    print(f"broker down after {accepted_when_down} of 100 orders were accepted, for "
          f"{outage:.1f}s; client retries: {stream.failures}")
    assert accepted_when_down < 100, "the stream was over before the broker stopped"
    # the vhost and its durable queues survived the restart, with every message in them
    assert_recovered(pipeline, vhost, order_ids, ITEM, BIG_STOCK)
