"""RpcClient against the real broker and a real nameko service, in a vhost of their own.

The service runs in a ``nameko run`` subprocess: nameko needs eventlet's monkey patching, which
the gateway (and so this test process) must do without.
"""
import logging
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.rpc import RemoteError, RpcClient, RpcTimeout, ServiceUnavailable, UnknownService
from nameko_topology.management import ManagementError
from nameko_topology.testing.broker import TestVhost, wait_for

pytestmark = pytest.mark.integration

SERVICE = textwrap.dedent('''
    import eventlet
    from nameko.rpc import rpc


    class GatewayTestService:
        name = "gwtest"

        @rpc
        def echo(self, value):
            return value

        @rpc
        def fail(self, message):
            raise ValueError(message)

        @rpc
        def slow(self, seconds, value=None):
            eventlet.sleep(seconds)
            return value
''')


@pytest.fixture(scope="module")
def module_vhost(rabbit_base_uri):
    """One vhost for the module: the service subprocess is started once for all tests."""
    vhost = TestVhost(rabbit_base_uri).create()
    yield vhost
    vhost.delete()


@pytest.fixture(scope="module")
def amqp_uri(module_vhost):
    return module_vhost.amqp_uri


@pytest.fixture(scope="module")
def service(tmp_path_factory, amqp_uri):
    """``nameko run`` of the test service; killed at teardown whatever happens."""
    workdir = tmp_path_factory.mktemp("gwtest_service")
    (workdir / "gwtest_service.py").write_text(SERVICE)
    (workdir / "config.yaml").write_text(textwrap.dedent('''
        AMQP_URI: {}
        max_workers: 20
        LOGGING:
          version: 1
          disable_existing_loggers: false
          root: {{level: INFO, handlers: [console]}}
          handlers: {{console: {{class: logging.StreamHandler}}}}
    ''').format(amqp_uri))
    log_path = workdir / "service.log"
    env = dict(os.environ, PYTHONPATH=str(workdir))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "nameko"), "run", "--config", "config.yaml",
             "gwtest_service"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        sys.stderr.write(log_path.read_text()[-3000:])  # shown by pytest for failing tests


@pytest.fixture
def client(amqp_uri, service):
    client = RpcClient(amqp_uri, timeout=5)

    def service_answers():
        assert service.poll() is None, "the nameko service exited"
        try:
            return client.call("gwtest", "echo", value="ping", timeout=2) == "ping"
        except ServiceUnavailable:  # not started yet: no queue, or no reply in time
            return False
    wait_for(service_answers, timeout=60, description="the nameko service to answer")
    yield client
    client.close()


def test_concurrent_calls_get_their_own_results(client):
    def call(i):
        value = {"i": i, "thread": threading.get_ident()}
        return value, client.call("gwtest", "echo", value=value)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, range(50)))
    assert len(results) == 50
    for sent, received in results:
        assert received == sent
    assert client.in_flight == 0


def test_calls_are_in_flight_together(client):
    with ThreadPoolExecutor(max_workers=16) as pool:
        calls = pool.map(
            lambda i: client.call("gwtest", "slow", seconds=2, value=i, timeout=15), range(16))
        wait_for(lambda: client.in_flight == 16, timeout=10, description="16 calls in flight")
        assert list(calls) == list(range(16))


def test_remote_exception(client):
    with pytest.raises(RemoteError) as error:
        client.call("gwtest", "fail", message="bad things")
    assert error.value.exc_type == "ValueError"
    assert "bad things" in error.value.value


def test_unknown_method_has_exc_type(client):
    with pytest.raises(Exception) as error:
        client.call("gwtest", "no_such_method")
    assert error.value.exc_type == "MethodNotFound"


def test_unknown_service_fails_at_once(client):
    # The broker returns the unroutable request: the error comes before the timeout would.
    with pytest.raises(UnknownService):
        client.call("no_such_service", "echo", value=1, timeout=30)


def test_slow_call_times_out_and_client_goes_on(client, caplog):
    caplog.set_level(logging.DEBUG, logger="gateway.rpc")
    with pytest.raises(RpcTimeout):
        client.call("gwtest", "slow", seconds=2, value="late", timeout=0.5)
    assert client.in_flight == 0  # the timed-out call left nothing behind
    assert client.call("gwtest", "echo", value="next") == "next"

    # The late reply arrives and is dropped, and later calls still get their own results.
    wait_for(lambda: any("discarding reply" in r.getMessage() for r in caplog.records),
             description="the late reply to be discarded")
    for i in range(5):
        assert client.call("gwtest", "echo", value=i) == i
    assert client["gwtest"].slow(seconds=0, value="sugar") == "sugar"
    assert client.in_flight == 0


def test_recovers_after_its_connections_are_closed(client, module_vhost):
    with ThreadPoolExecutor(max_workers=16) as pool:  # likely opens several publishers
        assert list(pool.map(lambda i: client.call("gwtest", "echo", value=i), range(64))) \
            == list(range(64))

    def client_connections():
        api = module_vhost.api
        conns = api.get(api.path("vhosts", module_vhost.name, "connections"))
        mine = [c["name"] for c in conns
                if client.id[:8] in (c.get("user_provided_name") or "")]
        return mine if len(mine) >= 2 else None  # the reply consumer and a publisher

    # The management API lists a connection after its first statistics interval (~5 s).
    names = wait_for(client_connections, description="the client's connections to be listed")

    in_flight = {}

    def slow_call():
        try:
            in_flight["result"] = client.call("gwtest", "slow", seconds=5, timeout=30)
        except Exception as exc:
            in_flight["result"] = exc
    caller = threading.Thread(target=slow_call)
    caller.start()
    wait_for(lambda: client.in_flight == 1, description="the slow call to be in flight")

    reply_queue = client.reply_queue_name
    for name in names:
        try:
            module_vhost.api.request("DELETE", module_vhost.api.path("connections", name))
        except ManagementError:
            pass  # a publisher connection the pool had closed already


    # The call in flight fails as soon as the reply connection is gone, not at its timeout.
    caller.join(timeout=20)
    assert not caller.is_alive()
    assert isinstance(in_flight["result"], ServiceUnavailable)
    assert not isinstance(in_flight["result"], RpcTimeout)

    def call_succeeds():
        try:
            return client.call("gwtest", "echo", value="again", timeout=2) == "again"
        except ServiceUnavailable:
            return False
    wait_for(call_succeeds, description="calls to succeed again")
    assert client.call("gwtest", "echo", value="still") == "still"
    # a reply queue of a new name: on a cluster the old one may linger on the survivors
    assert client.reply_queue_name != reply_queue
    assert reply_queue not in module_vhost.queues()


def test_broker_down_fails_fast():
    client = RpcClient("amqp://guest:guest@127.0.0.1:1/", timeout=30, connect_timeout=1)
    try:
        with pytest.raises(ServiceUnavailable) as error:
            client.call("gwtest", "echo", value=1)
        assert not isinstance(error.value, RpcTimeout)
        with pytest.raises(ServiceUnavailable):
            client.check_broker(timeout=1)
    finally:
        client.close()


def test_closed_client_refuses_calls(amqp_uri):
    client = RpcClient(amqp_uri, timeout=5)
    client.close()
    with pytest.raises(ServiceUnavailable):
        client.call("gwtest", "echo", value=1)
