"""``nameko-topology apply`` against the real broker."""
from pathlib import Path

import pytest
from kombu import Connection

from nameko_services.topology.cli import main

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = str(Path(__file__).resolve().parents[2] / "topology.yaml")


def test_apply_declares_the_topology_and_is_repeatable(vhost, capsys):
    assert main(["apply", REPO_TOPOLOGY, "--amqp-uri", vhost.amqp_uri]) == 0
    assert main(["apply", REPO_TOPOLOGY, "--amqp-uri", vhost.amqp_uri]) == 0

    assert "declared 3 exchanges, 6 queues, 6 bindings" in capsys.readouterr().out
    assert set(vhost.queues()) == {
        "order_placed_queue", "inventory_reserved_queue", "inventory_failed_queue",
        "order_status_reserved_queue", "order_status_failed_queue", "dead_letter_queue"}
    assert ("orders", "order_placed_queue", "order.placed") in vhost.bindings()


def test_apply_refuses_to_change_an_existing_queue(vhost, capsys):
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.queue_declare(
            "dead_letter_queue", durable=False, auto_delete=False)

    assert main(["apply", REPO_TOPOLOGY, "--amqp-uri", vhost.amqp_uri]) == 1

    error = capsys.readouterr().err
    assert "queue 'dead_letter_queue' already exists on the broker with different arguments" in error
    assert '"durable": false' in error and '"durable": true' in error
    assert vhost.queues()["dead_letter_queue"]["durable"] is False
