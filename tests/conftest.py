# nameko's containers need eventlet, and it must patch before anything imports socket or ssl.
import eventlet

eventlet.monkey_patch()  # noqa: E402

import os  # noqa: E402

import pytest  # noqa: E402

from tests.support.broker import TestVhost  # noqa: E402

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(scope="session")
def base_amqp_uri():
    return os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)


@pytest.fixture
def vhost(base_amqp_uri):
    """A fresh virtual host, deleted after the test with everything in it."""
    vhost = TestVhost(base_amqp_uri).create()
    yield vhost
    vhost.delete()
