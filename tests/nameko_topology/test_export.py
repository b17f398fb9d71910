"""``nameko-topology export``: definitions, AsyncAPI 3.0 (checked against the official schema),
Mermaid (the README's diagram), dot and SVG; and the services the exports name."""
import inspect
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import jsonschema
import pytest
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from nameko_services.inventory import InventoryService
from nameko_services.notifications import NotificationsService
from nameko_services.orders import OrdersService
from nameko_topology.cli import main
from nameko_topology.export import export
from nameko_topology.export.diagram import GRAPHVIZ_HINT
from nameko_topology.handle import Handle
from nameko_topology.model import (
    BindingSpec, DeadLetterSpec, ExchangeSpec, FieldSpec, MessageSpec, QueueSpec, RetrySpec,
    Topology, load_topology,
)
from nameko_topology.policies import PolicySpec

ROOT = Path(__file__).resolve().parents[2]
REPO_TOPOLOGY = ROOT / "topology.yaml"
ASYNCAPI_SCHEMA = Path(__file__).parent / "asyncapi" / "3.0.0.json"
README_DIAGRAM = re.compile(
    r"<!-- topology-diagram:start -->\n```mermaid\n(.*?)```\n<!-- topology-diagram:end -->",
    re.S)
SERVICES = (InventoryService, NotificationsService, OrdersService)


@pytest.fixture(scope="module")
def pipeline():
    return load_topology(REPO_TOPOLOGY)


@pytest.fixture
def retrying():
    """A hand-built topology: a queue retried after 1 s, dead-lettering to a quorum queue."""
    return Topology(
        source="retrying.yaml",
        exchanges={"jobs": ExchangeSpec("jobs", type="direct"), "dlx": ExchangeSpec("dlx")},
        queues={
            "work": QueueSpec("work", dead_letter=DeadLetterSpec("dlx", "dead.work"),
                              retry=RetrySpec(max_attempts=2, delays=(1000,)), consumer="worker"),
            "dead": QueueSpec("dead", type="quorum", retry=RetrySpec(max_attempts=1, delays=())),
        },
        bindings=(BindingSpec("jobs", "work", ("job",)), BindingSpec("dlx", "dead", ("#",))),
        messages={"Job": MessageSpec("Job", "jobs", "job", (FieldSpec("id", "string"),),
                                     publisher="planner")},
        policies={"cap": PolicySpec("cap", "^dead$", definition={"max-length": 10})},
    )


def run_export(capsys, *arguments):
    assert main(["export", *arguments]) == 0
    return capsys.readouterr().out


# -- definitions ------------------------------------------------------------------------------

def test_definitions_hold_every_declared_entity_with_the_vhost(retrying):
    document = json.loads(export(retrying, "definitions", vhost="v1"))

    assert document["vhosts"] == [{"name": "v1"}]
    assert [(q["name"], q["arguments"]) for q in document["queues"]] == [
        ("work", {"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead.work"}),
        ("dead", {"x-queue-type": "quorum"}),
        ("work.retry.1s", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "work",
                           "x-message-ttl": 1000}),
    ]
    assert {(b["source"], b["destination"], b["routing_key"]) for b in document["bindings"]} == {
        ("jobs", "work", "job"), ("dlx", "dead", "#")}
    assert document["policies"] == [{"vhost": "v1", "name": "cap", "pattern": "^dead$",
                                     "apply-to": "queues", "priority": 0,
                                     "definition": {"max-length": 10}}]
    assert {e["vhost"] for section in ("exchanges", "queues", "bindings", "policies")
            for e in document[section]} == {"v1"}


def test_definitions_vhost_defaults_to_the_uri(capsys):
    out = run_export(capsys, str(REPO_TOPOLOGY), "--format", "definitions",
                     "--amqp-uri", "amqp://guest:guest@localhost:5672/orders_prod")
    assert json.loads(out)["vhosts"] == [{"name": "orders_prod"}]


# -- AsyncAPI -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def asyncapi_validator():
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from [value] if key == "$ref" else refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document, ref):
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_of_the_pipeline_passes_the_official_schema(capsys, asyncapi_validator):
    out = run_export(capsys, str(REPO_TOPOLOGY), "--format", "asyncapi",
                     "--amqp-uri", "amqp://guest:s3cret@broker.example:5672/shop")
    document = json.loads(out)

    assert [e.message for e in asyncapi_validator.iter_errors(document)] == []
    for ref in refs(document):
        resolve(document, ref)  # every reference points into the document
    assert "s3cret" not in out and "guest" not in out
    assert document["servers"]["rabbitmq"]["host"] == "broker.example:5672"

    placed = document["channels"]["orders.order.placed"]
    assert placed["address"] == "order.placed"
    assert placed["bindings"]["amqp"]["exchange"]["vhost"] == "shop"
    operations = document["operations"]
    assert operations["orders.sends.OrderPlaced"]["action"] == "send"
    receive = operations["inventory.receives.order_placed_queue"]
    assert (receive["action"], receive["x-queue"]) == ("receive", "order_placed_queue")
    assert receive["x-dead-letter"]["exchange"] == "dlx_exchange"
    assert receive["x-retry"]["queues"] == ["order_placed_queue.retry.100ms"]
    payload = document["components"]["messages"]["OrderPlaced"]["payload"]
    assert payload["required"] == ["order_id", "item", "quantity"]
    assert payload["properties"]["quantity"] == {"type": "integer", "minimum": 1,
                                                 "maximum": 1000000}


def test_asyncapi_marks_retry_queues(retrying, asyncapi_validator):
    document = json.loads(export(retrying, "asyncapi"))

    assert list(asyncapi_validator.iter_errors(document)) == []
    assert document["x-nameko-topology"]["retry-queues"] == [
        {"name": "work.retry.1s", "x-retry-queue": True, "returns-to": "work", "delay-ms": 1000}]
    receive = document["operations"]["worker.receives.work"]
    assert receive["x-retry"] == {"max-attempts": 2, "delays-ms": [1000], "jitter": 0.0,
                                  "queues": ["work.retry.1s"]}
    assert receive["x-dead-letter"] == {"exchange": "dlx", "routing-key": "dead.work"}
    # the dead-letter queue's "#" binding receives every message type of its exchange: none
    assert document["channels"]["dlx._"]["messages"] == {}


# -- diagrams ---------------------------------------------------------------------------------

def test_mermaid_draws_retry_and_dead_letter_edges_differently(retrying):
    text = export(retrying, "mermaid")

    assert text.startswith("flowchart LR\n")
    assert '  s_planner -->|"Job"| e_jobs\n' in text
    assert '  e_jobs -->|"job"| q_work\n' in text
    assert "  q_work --> s_worker\n" in text
    assert '  q_work -.->|"dead-letter [dead.work]"| e_dlx\n' in text
    assert '  q_work ==>|"retry"| q_work_retry_1s\n' in text
    assert '  q_work_retry_1s ==>|"after 1s"| q_work\n' in text
    assert '  q_work_retry_1s[("work.retry.1s (waits 1s)")]:::retry\n' in text
    # "#" would start a Mermaid entity code
    assert '  e_dlx -->|"#35;"| q_dead\n' in text


def test_readme_shows_the_pipeline_diagram(capsys):
    out = run_export(capsys, str(REPO_TOPOLOGY), "--format", "mermaid")
    blocks = README_DIAGRAM.findall((ROOT / "README.md").read_text())
    assert blocks == [out], "README.md's topology diagram differs from `nameko-topology " \
                            "export --format mermaid`: paste the command's output between its markers"


def test_dot_styles_retry_and_dead_letter_edges(retrying):
    text = export(retrying, "dot")

    assert text.startswith("digraph topology {\n") and text.endswith("}\n")
    assert 'q_work -> e_dlx [label="dead-letter [dead.work]", style=dashed, color=firebrick];' in text
    assert 'q_work -> q_work_retry_1s [label="retry", style=bold, color=darkorange];' in text
    assert 'q_work_retry_1s [label="work.retry.1s (waits 1s)", shape=cylinder, style=dashed];' in text


def test_svg_is_valid(capsys, tmp_path):
    pytest.importorskip("shutil").which("dot") or pytest.skip("Graphviz is not installed")
    out = tmp_path / "topology.svg"
    assert main(["export", str(REPO_TOPOLOGY), "--format", "svg", "-o", str(out)]) == 0

    root = ElementTree.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"order_placed_queue", "order.placed", "inventory"} <= texts


def test_svg_without_graphviz_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["export", str(REPO_TOPOLOGY), "--format", "svg"]) == 1
    assert capsys.readouterr().err.strip() == GRAPHVIZ_HINT
    assert "apt-get install graphviz" in GRAPHVIZ_HINT


# -- the services the exports name ----------------------------------------------------------

def test_consumers_in_the_file_are_the_services_handling_the_queues(pipeline):
    handled = {entrypoint.queue_name: service.name for service in SERVICES
               for _, method in inspect.getmembers(service, inspect.isfunction)
               for entrypoint in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, ())
               if isinstance(entrypoint, Handle)}
    assert {q.name: q.consumer for q in pipeline.queues.values() if q.consumer} == handled


def test_publishers_in_the_file_are_the_services_adding_them_to_their_outbox(pipeline):
    added = {name: service.name for service in SERVICES
             for name in re.findall(r'outbox\.add(?:_many)?\(\w+, "(\w+)"',
                                    inspect.getsource(inspect.getmodule(service)))}
    assert {m.name: m.publisher for m in pipeline.messages.values()} == added
