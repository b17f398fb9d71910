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
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from kombu.utils.url import url_to_parts

from gateway.rpc import RemoteError, RpcClient, RpcTimeout, ServiceUnavailable, UnknownService

pytestmark = pytest.mark.integration

BASE_AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
_, HOST, _, USER, PASSWORD, _, _ = url_to_parts(BASE_AMQP_URI)
API = os.environ.get("RABBIT_API_URI", "http://{}:15672/api".format(HOST)).rstrip("/")
AUTH = (USER, PASSWORD)

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


def wait_for(condition, timeout=30.0, description="condition"):
    """Poll ``condition()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {}s waiting for {}".format(timeout, description))
        time.sleep(0.05)


def api(method, path, **kwargs):
    response = requests.request(method, API + path, auth=AUTH, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def quote(name):
    return urllib.parse.quote(name, safe="")


@pytest.fixture(scope="module")
def vhost():
    try:
        api("GET", "/overview")
    except requests.RequestException as exc:
        pytest.skip("RabbitMQ management API not reachable at {}: {}".format(API, exc))
    name = "gateway_test_{}".format(uuid.uuid4().hex[:10])
    api("PUT", "/vhosts/" + quote(name))
    api("PUT", "/permissions/{}/{}".format(quote(name), quote(USER)),
        json={"configure": ".*", "write": ".*", "read": ".*"})
    yield name
    api("DELETE", "/vhosts/" + quote(name))


@pytest.fixture(scope="module")
def amqp_uri(vhost):
    return "amqp://{}:{}@{}:5672/{}".format(USER, PASSWORD, HOST, vhost)


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
    # 16 calls of 1 s each: one at a time they would take 16 s.
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(
            lambda i: client.call("gwtest", "slow", seconds=1, value=i, timeout=15), range(16)))
    assert results == list(range(16))
    assert time.monotonic() - started < 12


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


def test_recovers_after_its_connections_are_closed(client, vhost):
    with ThreadPoolExecutor(max_workers=16) as pool:  # likely opens several publishers
        assert list(pool.map(lambda i: client.call("gwtest", "echo", value=i), range(64))) \
            == list(range(64))

    def client_connections():
        conns = api("GET", "/vhosts/{}/connections".format(quote(vhost)))
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

    for name in names:
        requests.delete(API + "/connections/" + quote(name), auth=AUTH, timeout=10,
                        headers={"X-Reason": "gateway test: simulated drop"})

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
