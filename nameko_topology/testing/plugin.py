"""The ``nameko_topology`` pytest plugin: a RabbitMQ vhost per test, the topology declared in it,
and helpers to publish, read queues and dead letters, and run services.

Registered through the ``pytest11`` entry point, so installing the package enables it; ``pytest
--fixtures`` lists the fixtures. The broker is ``AMQP_URI`` (default
``amqp://guest:guest@localhost:5672/``) with its management API, where each test gets a vhost of
its own. The topology file is the ini option ``nameko_topology_file`` (default
``topology.yaml`` in the rootdir); override the ``topology_file`` fixture for another per test.

A service's tests need ``eventlet.monkey_patch()`` at the top of their ``conftest.py``, before
anything imports ``socket``, as for any nameko test: in a conftest.py that pytest loads before it
configures plugins, i.e. one in a directory it is given, a parent of one, or a ``test*/``
subdirectory of one (``tests/conftest.py`` when pytest runs in the project folder); a deeper one
is loaded only while collecting, too late. docs/writing-a-service.md walks through a service's
tests.
"""
import os
from pathlib import Path

import pytest

# The framework is imported inside the fixtures, never here: pytest loads this module before
# the conftest that calls eventlet.monkey_patch(), which must run before socket is imported.


def pytest_addoption(parser):
    parser.addini("nameko_topology_file", "the topology file the nameko_topology fixtures use "
                  "(relative to the rootdir)", default="topology.yaml")


@pytest.fixture(scope="session")
def rabbit_base_uri():
    """The broker the tests use: ``AMQP_URI``, else the local default."""
    from nameko_topology.constants import DEFAULT_AMQP_URI
    return os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)


@pytest.fixture
def rabbit_vhost(rabbit_base_uri):
    """A fresh RabbitMQ virtual host (a :class:`~nameko_topology.testing.broker.TestVhost`:
    ``.amqp_uri``, ``.depth(queue)``, ``.take_messages(queue)``, ``.publish(...)``), deleted
    after the test with everything in it."""
    from nameko_topology.testing.broker import TestVhost
    vhost = TestVhost(rabbit_base_uri).create()
    yield vhost
    vhost.delete()


@pytest.fixture
def topology_file(request):
    """Path of the topology file (the ini option ``nameko_topology_file``)."""
    return Path(request.config.rootpath) / request.config.getini("nameko_topology_file")


@pytest.fixture
def topology(rabbit_vhost, topology_file):
    """The topology file, loaded, validated and declared in ``rabbit_vhost``."""
    from kombu import Connection

    from nameko_topology.declarer import declare_topology
    from nameko_topology.model import load_topology
    loaded = load_topology(topology_file)
    with Connection(rabbit_vhost.amqp_uri) as connection:
        declare_topology(connection, loaded)
    return loaded


@pytest.fixture
def publish(rabbit_vhost, topology):
    """``publish(message_type, payload, **properties)``: the payload checked against its type,
    published to the type's exchange and routing key as a service would (persistent,
    confirmed); returns the message id."""
    from nameko_topology.messages import outgoing

    def publish(message_type, payload, **properties):
        message = outgoing(topology.message(message_type), payload,
                           message_id=properties.pop("message_id", None),
                           correlation_id=properties.pop("correlation_id", None))
        rabbit_vhost.publish(message.pop("exchange"), message.pop("routing_key"),
                             message.pop("body"), **{**message, **properties})
        return message["message_id"]
    return publish


@pytest.fixture
def publish_raw(rabbit_vhost):
    """``publish_raw(exchange, routing_key, body, **properties)``: anything, unchecked (bytes
    and str as they are, other bodies as JSON), persistent and confirmed."""
    return rabbit_vhost.publish


@pytest.fixture
def queue_depth(rabbit_vhost):
    """``queue_depth(name)``: the messages ready in the queue now."""
    return rabbit_vhost.depth


@pytest.fixture
def take_messages(rabbit_vhost):
    """``take_messages(queue)``: remove and return every message in the queue, as dicts of
    ``body`` (bytes), ``headers``, ``properties`` and ``routing_key``."""
    return rabbit_vhost.take_messages


@pytest.fixture
def dead_letters(rabbit_vhost, topology):
    """``dead_letters(queue=None)``: remove and return the messages in the dead-letter queue
    (the one queue bound to the topology's dead-letter exchanges, unless named), each with
    ``reason`` and ``queue`` (the headers the framework sets) and ``payload`` (the JSON body,
    or None) besides what ``take_messages`` gives."""
    from nameko_topology.dead_letters import as_record, dead_letter_queue

    def dead_letters(queue=None):
        return [as_record(message) for message in
                rabbit_vhost.take_messages(queue or dead_letter_queue(topology))]
    return dead_letters


@pytest.fixture
def wait_for():
    """``wait_for(condition, timeout=30, description=...)``: poll until ``condition()`` is
    truthy and return its value; fail the test on timeout. Use it instead of sleeps."""
    from nameko_topology.testing.broker import wait_for
    return wait_for


@pytest.fixture
def run_services(rabbit_vhost, topology, topology_file, tmp_path):
    """``run_services(*service_classes, config=None)``: start the services in one nameko
    runner on ``rabbit_vhost`` (topology declared, SQLite under ``tmp_path``); returns the
    runner; every runner is stopped after the test. ``config`` adds to or overrides the
    container config."""
    from nameko.runners import ServiceRunner
    runners = []

    def run_services(*service_classes, config=None):
        full_config = {"AMQP_URI": rabbit_vhost.amqp_uri, "TOPOLOGY_FILE": str(topology_file),
                       "DATA_DIR": str(tmp_path / "data"), "max_workers": 4, **(config or {})}
        runner = ServiceRunner(full_config)
        for service_class in service_classes:
            runner.add_service(service_class)
        runners.append(runner)
        runner.start()
        return runner

    yield run_services
    for runner in reversed(runners):
        try:
            runner.stop()
        except Exception:
            runner.kill()


@pytest.fixture
def sqlite_database(tmp_path):
    """A real :class:`~nameko_topology.database.DatabaseHandle` on a SQLite file of this test:
    the database to give ``worker_factory`` (``db=sqlite_database``)."""
    from nameko_topology.database import DatabaseHandle
    handle = DatabaseHandle(f"sqlite:///{tmp_path}/service.sqlite3")
    yield handle
    handle.engine.dispose()


@pytest.fixture
def fake_outbox(topology_file, sqlite_database):
    """A :class:`~nameko_topology.testing.fakes.FakeOutbox` for ``worker_factory``, checking
    payloads against the topology file and staging in ``sqlite_database``'s transactions."""
    from nameko_topology.model import load_topology
    from nameko_topology.testing.fakes import FakeOutbox
    return FakeOutbox(load_topology(topology_file), sqlite_database)
