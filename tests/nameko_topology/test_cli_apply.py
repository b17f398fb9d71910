"""``nameko-topology apply`` against the real broker."""
from pathlib import Path

import pytest
import yaml
from kombu import Connection

from nameko_topology.cli import main

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = str(Path(__file__).resolve().parents[2] / "topology.yaml")


def test_apply_declares_the_topology_and_is_repeatable(vhost, capsys):
    assert main(["apply", REPO_TOPOLOGY, "--amqp-uri", vhost.amqp_uri]) == 0
    assert main(["apply", REPO_TOPOLOGY, "--amqp-uri", vhost.amqp_uri]) == 0

    assert "declared 3 exchanges, 6 queues, 6 bindings, 5 retry queues" in (
        capsys.readouterr().out)
    handled = {"order_placed_queue", "inventory_reserved_queue", "inventory_failed_queue",
               "order_status_reserved_queue", "order_status_failed_queue"}
    assert set(vhost.queues()) == {"dead_letter_queue", *handled} | {
        f"{name}.retry.100ms" for name in handled}
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


def with_orders_exchange_arguments(tmp_path, arguments):
    """A copy of the repository's topology whose 'orders' exchange has ``arguments``."""
    document = yaml.safe_load(Path(REPO_TOPOLOGY).read_text())
    [orders] = [e for e in document["exchanges"] if e["name"] == "orders"]
    orders["arguments"] = arguments
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


@pytest.mark.parametrize("on_broker, in_file, declared, held", [
    # another type
    ({"type": "direct"}, {}, '"type": "topic"', '"type": "direct"'),
    # an argument the file does not declare
    ({"arguments": {"alternate-exchange": "unrouted"}}, {},
     '"arguments": {}', '"arguments": {"alternate-exchange": "unrouted"}'),
    # an argument the file declares and the broker's exchange does not have
    ({}, {"alternate-exchange": "unrouted"},
     '"arguments": {"alternate-exchange": "unrouted"}', '"arguments": {}'),
])
def test_apply_refuses_to_change_an_existing_exchange(vhost, capsys, tmp_path, on_broker,
                                                      in_file, declared, held):
    existing = {"type": "topic", "arguments": {}, **on_broker}
    with Connection(vhost.amqp_uri) as connection:
        connection.default_channel.exchange_declare(
            "orders", existing["type"], durable=True, auto_delete=False,
            arguments=existing["arguments"])
    topology = with_orders_exchange_arguments(tmp_path, in_file) if in_file else REPO_TOPOLOGY

    assert main(["apply", topology, "--amqp-uri", vhost.amqp_uri]) == 1

    error = capsys.readouterr().err
    assert "exchange 'orders' already exists on the broker with different arguments" in error
    [declares] = [line for line in error.splitlines() if "topology.yaml declares:" in line]
    [holds] = [line for line in error.splitlines() if "the broker holds:" in line]
    assert declared in declares and held in holds
    # nothing was changed or deleted
    exchange = vhost.exchanges()["orders"]
    assert (exchange["type"], exchange["arguments"]) == (existing["type"], existing["arguments"])
