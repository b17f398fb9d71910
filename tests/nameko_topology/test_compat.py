"""Each library internal that nameko_topology.compat relies on, checked against the installed
py-amqp, kombu and nameko: when one of these fails, an upgrade changed what compat reaches into."""
import inspect

import pytest
from kombu import Connection
from nameko import rpc as nameko_rpc
from nameko.messaging import QueueConsumer

from nameko_topology import compat

pytestmark = pytest.mark.integration


def test_py_amqp_transports_still_write_through_the_private_write(vhost):
    with Connection(vhost.amqp_uri) as connection:
        connection.connect()
        transport = connection.connection.transport
        assert callable(transport._write), "py-amqp's transport has no _write: one_write " \
                                           "falls back to a socket write per frame"
        # write() must go through _write, or swapping it would capture nothing
        assert "self._write(" in inspect.getsource(type(transport).write)


def test_py_amqp_still_polls_for_connection_blocked_by_the_negotiated_capabilities(vhost):
    with Connection(vhost.amqp_uri) as connection:
        channel = connection.channel()
        capabilities = channel.connection.client_properties["capabilities"]
        assert capabilities["connection.blocked"] is True
        assert compat.skip_blocked_poll(channel) is True
        assert capabilities["connection.blocked"] is False
        source = inspect.getsource(type(channel).basic_publish)
        assert "client_properties.get('capabilities'" in source
        assert "connection.blocked" in source


def test_nameko_queue_consumer_still_keeps_providers_and_consumers_in_private_attributes():
    queue_consumer = QueueConsumer()
    provider = object()
    queue_consumer.register_provider(provider)
    assert compat.consumer_providers(queue_consumer) == {provider}
    assert isinstance(compat.set_consumers(queue_consumer, {}), type({}.values()))
    assert queue_consumer._consumers == {}
    source = inspect.getsource(QueueConsumer)
    assert "self._providers" in source and "self._consumers" in source


def test_nameko_responder_still_builds_its_publisher_from_publisher_cls_in_send_response():
    assert list(inspect.signature(nameko_rpc.Responder.__init__).parameters)[:5] == [
        "self", "amqp_uri", "exchange", "serializer", "message"]
    assert "self.publisher_cls(" in inspect.getsource(nameko_rpc.Responder.send_response)


def test_the_start_up_line_names_the_versions_and_the_fast_paths():
    line = compat.active_paths()
    assert line.startswith("amqp 5.4") and "kombu 5.7" in line and "nameko 2.14.1" in line
    assert line.count("fast path") == 2
