"""A failover AMQP_URI whose first node refuses: every client goes on to the next node, and no
password of the list shows in a log line or an error message."""
import logging
import socket

import pytest

from nameko_topology.cli import main
from nameko_topology.management import ManagementApi, port_from_environment
from nameko_topology.testing.broker import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def refusing_port():
    """A local port nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def failover_uri(rabbit_vhost, refusing_port):
    """A dead first node with a password of its own, then the test's vhost."""
    return (f"amqp://guest:first-secret@127.0.0.1:{refusing_port}/{rabbit_vhost.name};"
            f"{rabbit_vhost.amqp_uri}")


def assert_no_password(text):
    assert "first-secret" not in text
    assert ":guest@" not in text


def test_services_connect_to_the_second_node_and_log_no_password(
        run_services, failover_uri, rabbit_vhost, caplog):
    from nameko_services.inventory import InventoryService

    with caplog.at_level(logging.INFO):
        run_services(InventoryService, config={"AMQP_URI": failover_uri})
        wait_for(lambda: rabbit_vhost.consumers("order_placed_queue") == 1,
                 description="the inventory service consuming through the second node")

    connecting = [r.getMessage() for r in caplog.records if "Error connecting" in r.getMessage()]
    assert connecting, "the first node's refusal was not logged"
    assert "amqp://guest:**@127.0.0.1" in connecting[0]
    assert_no_password(caplog.text)


def test_the_cli_applies_through_the_second_node(failover_uri, rabbit_vhost, capsys):
    assert main(["apply", "topology.quorum.yaml", "--amqp-uri", failover_uri]) == 0

    output = capsys.readouterr().out
    assert_no_password(output)
    assert rabbit_vhost.queues()["order_placed_queue"]["type"] == "quorum"


def test_the_cli_names_no_password_when_no_node_answers(refusing_port, capsys):
    uri = (f"amqp://guest:first-secret@127.0.0.1:{refusing_port}/v;"
           f"amqp://guest:guest@127.0.0.1:{refusing_port}/v")
    assert main(["apply", "topology.yaml", "--amqp-uri", uri]) == 1

    error = capsys.readouterr().err
    assert "cannot reach the broker at amqp://guest:**@127.0.0.1" in error
    assert_no_password(error)


def test_the_management_api_is_asked_on_the_first_node_that_answers(
        failover_uri, rabbit_vhost, refusing_port):
    api = ManagementApi(failover_uri, port=f"{refusing_port};{port_from_environment()}")
    assert api.entity("exchange", "amq.direct")["type"] == "direct"
