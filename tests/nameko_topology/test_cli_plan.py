"""``nameko-topology plan`` (and ``apply``) against the real broker: the pipeline's vhost,
entities deleted and re-created by hand, definitions imported."""
import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kombu import Connection

from nameko_services.inventory import InventoryService
from nameko_services.notifications import NotificationsService
from nameko_services.orders import OrdersService
from nameko_topology.cli import main
from nameko_topology.management import ManagementApi
from nameko_topology.testing.broker import delete_vhost

pytestmark = pytest.mark.integration

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"
POLICY = {"name": "dead-letters-capped", "queues": ["dead_letter_queue"],
          "definition": {"max-length-bytes": 100_000_000, "overflow": "reject-publish"}}


@pytest.fixture
def topology_file(tmp_path):
    """The pipeline's topology with a policy: the fixtures (and the services) use it."""
    document = yaml.safe_load(REPO_TOPOLOGY.read_text())
    document["policies"] = [POLICY]
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def plan(topology_file, vhost, *options):
    return main(["plan", str(topology_file), "--amqp-uri", vhost.amqp_uri, *options])


def apply(topology_file, vhost):
    return main(["apply", str(topology_file), "--amqp-uri", vhost.amqp_uri])


def test_the_running_pipeline_is_in_sync_and_a_deleted_binding_is_restored(
        vhost, topology, topology_file, run_services, capsys):
    # the services set the policy (a management URL is configured) and declare their own RPC
    # queues, which plan leaves out
    run_services(InventoryService, NotificationsService, OrdersService,
                 config={"RABBITMQ_MANAGEMENT_URL": "http://localhost:15672"})
    assert "rpc-orders" in vhost.queues()
    assert plan(topology_file, vhost, "--strict") == 0
    assert capsys.readouterr().out.endswith("in sync\n")

    vhost.api.request("DELETE", vhost.api.path(
        "bindings", vhost.name, "e", "orders", "q", "order_placed_queue", "order.placed"))
    assert plan(topology_file, vhost) == 2
    out = capsys.readouterr().out
    assert ("To create (apply declares them):\n"
            "  binding  orders -> order_placed_queue [routing key 'order.placed']\n") in out

    assert apply(topology_file, vhost) == 0
    assert ("orders", "order_placed_queue", "order.placed") in vhost.bindings()
    assert plan(topology_file, vhost) == 0


def test_a_queue_recreated_with_another_argument(vhost, topology, topology_file, capsys):
    assert apply(topology_file, vhost) == 0
    with Connection(vhost.amqp_uri) as connection:
        channel = connection.default_channel
        channel.queue_delete("dead_letter_queue")
        channel.queue_declare("dead_letter_queue", durable=True, auto_delete=False,
                              arguments={"x-max-length": 5})
    vhost.publish("", "dead_letter_queue", {"kept": True})
    capsys.readouterr()

    assert plan(topology_file, vhost) == 2
    out = capsys.readouterr().out
    assert "Not changeable in place (apply refuses; re-create as below):\n  queue " in out
    assert (" dead_letter_queue\n"
            "      arguments.x-max-length  file: (none)  broker: 5\n") in out
    assert "1. stop the services" in out and "shovel" in out
    assert f"rabbitmqctl delete_queue -p {vhost.name} dead_letter_queue\n" in out
    assert f"nameko-topology apply {topology_file}" in out

    plan(topology_file, vhost, "--json")
    [replace] = json.loads(capsys.readouterr().out)["replace"]
    assert replace["differences"] == [
        {"setting": "arguments.x-max-length", "file": None, "broker": 5}]

    queues_before = set(vhost.queues())
    assert apply(topology_file, vhost) == 1
    assert ("queue 'dead_letter_queue' already exists on the broker with different arguments; "
            "nothing was changed or deleted.") in capsys.readouterr().err
    assert set(vhost.queues()) == queues_before
    assert vhost.queues()["dead_letter_queue"]["arguments"] == {"x-max-length": 5}
    assert vhost.depth("dead_letter_queue") == 1


def test_an_exchange_argument_rabbitmq_does_not_compare(vhost, topology, topology_file, capsys):
    # RabbitMQ compares only type, durable, auto_delete and alternate-exchange on redeclare:
    # an exchange re-created with another argument is accepted by every declaration
    with Connection(vhost.amqp_uri) as connection:
        channel = connection.default_channel
        channel.exchange_delete("inventory")
        channel.exchange_declare("inventory", "topic", durable=True, auto_delete=False,
                                 arguments={"x-origin": "by hand"})
    assert apply(topology_file, vhost) == 0
    capsys.readouterr()

    assert plan(topology_file, vhost) == 2
    out = capsys.readouterr().out
    assert ("  exchange  inventory\n"
            "      arguments.x-origin  file: (none)  broker: \"by hand\"\n") in out
    assert "delete the exchange (its bindings go with it)" in out


def test_unreachable_management_api_is_an_error(vhost, topology_file, capsys):
    uri = vhost.amqp_uri.replace("guest:guest@", "guest:s3cret@")
    assert main(["plan", str(topology_file), "--amqp-uri", uri,
                 "--management-url", "http://127.0.0.1:9"]) == 1
    error = capsys.readouterr().err
    assert "cannot read vhost" in error and "management plugin" in error
    assert "s3cret" not in error

    assert main(["plan", str(topology_file), "--amqp-uri", vhost.amqp_uri + "_missing"]) == 1
    assert "the broker has no vhost" in capsys.readouterr().err


def test_exported_definitions_import_through_the_api_without_drift(
        vhost, topology_file, tmp_path, capsys):
    out = tmp_path / "definitions.json"
    assert main(["export", str(topology_file), "--format", "definitions", "--vhost",
                 vhost.name, "-o", str(out)]) == 0
    vhost.api.request("POST", vhost.api.path("definitions", vhost.name),
                      json.loads(out.read_text()))
    assert plan(topology_file, vhost, "--strict") == 0


def test_exported_definitions_import_with_rabbitmqctl(topology_file, rabbit_base_uri, tmp_path,
                                                      wait_for, capsys):
    # rabbitmqctl imports the vhosts the file names: a throwaway one, deleted after
    name = f"nt_test_definitions_{uuid.uuid4().hex[:10]}"
    out = tmp_path / "definitions.json"
    assert main(["export", str(topology_file), "--format", "definitions", "--vhost", name,
                 "-o", str(out)]) == 0
    uri = f"{ManagementApi(rabbit_base_uri).server_uri}/{name}"
    try:
        # on standard input: the broker, not the command, would read a file (as its own user)
        subprocess.run(["rabbitmqctl", "import_definitions", "--format", "json"],
                       input=out.read_text(), text=True, check=True, capture_output=True,
                       timeout=120)
        # the import finishes in the background
        wait_for(lambda: main(["plan", str(topology_file), "--amqp-uri", uri,
                               "--strict"]) == 0, timeout=60, description="imported vhost")
    finally:
        delete_vhost(rabbit_base_uri, name)
