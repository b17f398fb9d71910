"""A service never starts on a bad topology file or a malformed ``INITIAL_STOCK``.

``nameko run --config config.yaml nameko_services.inventory`` runs as a real process, in a
virtual host of its own; it must exit non-zero by itself, and the last line it writes must say
what is wrong: the file, the entry's path in it and the problem, or ``INITIAL_STOCK`` and the
problem.
"""
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.stack import Stack

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"
EXIT_TIMEOUT = 60  # seconds; a failed start-up takes a few


@pytest.fixture
def start_inventory(vhost, tmp_path):
    """Start the inventory service with extra environment; its exit code and its output."""
    stack = Stack(vhost.amqp_uri, tmp_path / "data", services=("inventory",))

    def start_inventory(**env):
        stack.env.update(env)
        process = stack.start_service("inventory")
        try:
            process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"inventory still running after {EXIT_TIMEOUT}s; it should have refused "
                        f"to start:\n{stack.log_path('inventory').read_text()}")
        return process.returncode, stack.log_path("inventory").read_text()

    try:
        yield start_inventory
    finally:
        stack.stop()


def last_line(output):
    return output.rstrip().splitlines()[-1].strip()


def shipped_topology_with(change):
    document = yaml.safe_load(REPO_TOPOLOGY.read_text())
    change(document)
    return document


def undeclared_dead_letter_exchange(document):
    document["queues"][0]["dead_letter"]["exchange"] = "nowhere"


def dead_letter_cycle(document):
    # order_placed_queue -> dlx_exchange -> dead_letter_queue -> orders -> order_placed_queue
    document["queues"][-1]["dead_letter"] = {"exchange": "orders",
                                             "routing_key": "order.placed"}


def misspelt_key(document):
    document["queues"][1]["durabel"] = True


@pytest.mark.parametrize("change, entry, problem", [
    (undeclared_dead_letter_exchange, "queues[0].dead_letter.exchange",
     "exchange 'nowhere' is not declared under exchanges"),
    (dead_letter_cycle, "queues[0].dead_letter.exchange",
     "dead-lettered messages would route back into 'order_placed_queue' through other queues: "
     "order_placed_queue -> dead_letter_queue -> order_placed_queue"),
    (misspelt_key, "queues[1]", "unknown key 'durabel'"),
])
def test_a_bad_topology_file_stops_the_service(vhost, tmp_path, start_inventory, change, entry,
                                                problem):
    topology = tmp_path / "bad-topology.yaml"
    topology.write_text(yaml.safe_dump(shipped_topology_with(change)))

    returncode, output = start_inventory(TOPOLOGY_FILE=str(topology))

    assert returncode != 0, output
    assert last_line(output).startswith(f"{topology}: {entry}: {problem}"), output
    assert vhost.queues() == {}  # nothing was declared


@pytest.mark.parametrize("initial_stock, problem", [
    ('{"widget-A": -1}', "INITIAL_STOCK: quantity of 'widget-A' must be an integer >= 0, got -1"),
    ("not json", "INITIAL_STOCK is not valid JSON: "),
])
def test_a_malformed_initial_stock_stops_the_service(start_inventory, initial_stock, problem):
    returncode, output = start_inventory(INITIAL_STOCK=initial_stock)

    assert returncode != 0, output
    assert problem in last_line(output), output
