import dataclasses
import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from nameko_topology import model
from nameko_topology.model import load_topology

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"


@pytest.fixture(scope="module")
def topology():
    return load_topology(REPO_TOPOLOGY)


def test_classic_queue_broker_arguments(topology):
    assert topology.queue("order_placed_queue").broker_arguments == {
        "x-dead-letter-exchange": "dlx_exchange"
    }
    assert topology.queue("dead_letter_queue").broker_arguments == {}


def test_quorum_queue_broker_arguments(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump({
        "exchanges": [{"name": "dlx"}],
        "queues": [{
            "name": "work",
            "type": "quorum",
            "delivery_limit": 5,
            "message_ttl": 60000,
            "dead_letter": {"exchange": "dlx", "routing_key": "work.dead"},
            "arguments": {"x-max-in-memory-length": 10},
        }],
    }))
    assert load_topology(path).queue("work").broker_arguments == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-message-ttl": 60000,
        "x-dead-letter-exchange": "dlx",
        "x-dead-letter-routing-key": "work.dead",
        "x-max-in-memory-length": 10,
    }


def test_defaults(topology):
    queue = topology.queue("order_placed_queue")
    assert (queue.durable, queue.type, queue.retry) == (True, "classic", model.RetrySpec(3, (100,)))
    exchange = topology.exchanges["orders"]
    assert (exchange.type, exchange.durable, exchange.auto_delete) == ("topic", True, False)


def test_kombu_queue_carries_its_bindings(topology):
    queue = topology.kombu_queue("order_placed_queue")
    assert queue.name == "order_placed_queue"
    assert queue.queue_arguments == {"x-dead-letter-exchange": "dlx_exchange"}
    [binding] = queue.bindings
    assert (binding.exchange.name, binding.exchange.type) == ("orders", "topic")
    assert binding.routing_key == "order.placed"


def test_undeclared_queue_is_named(topology):
    with pytest.raises(KeyError, match="queue 'nope' is not declared in .*topology.yaml"):
        topology.kombu_queue("nope")


def test_message_for_route(topology):
    assert topology.message_for_route("orders", "order.placed").name == "OrderPlaced"
    assert topology.message_for_route("orders", "order.unknown") is None


@pytest.mark.parametrize("body", [
    {"order_id": "o-1", "item": "widget", "quantity": 2},
    {"order_id": "o-1", "item": "widget", "quantity": 2, "remaining": 0},
])
def test_message_json_schema_accepts_good_bodies(topology, body):
    jsonschema.validate(body, topology.message("InventoryReserved").json_schema)


@pytest.mark.parametrize("body", [
    {"order_id": "o-1", "item": "widget"},  # quantity missing
    {"order_id": "", "item": "widget", "quantity": 2},  # min_length 1
    {"order_id": "o-1", "item": "widget", "quantity": 0},  # minimum 1
    {"order_id": "o-1", "item": "widget", "quantity": "2"},  # not an integer
    {"order_id": "o-1", "item": "widget", "quantity": 2, "remaining": -1},  # minimum 0
])
def test_message_json_schema_rejects_bad_bodies(topology, body):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, topology.message("InventoryReserved").json_schema)


@pytest.mark.parametrize("definition, spec", [
    ("exchange", model.ExchangeSpec),
    ("queue", model.QueueSpec),
    ("dead_letter", model.DeadLetterSpec),
    ("binding", model.BindingSpec),
    ("message", model.MessageSpec),
    ("field", model.FieldSpec),
])
def test_schema_keys_are_the_spec_fields(definition, spec):
    # the model passes every key of an entry to its spec as a keyword argument
    schema = json.loads(
        resources.files("nameko_topology").joinpath("schema.json").read_text()
    )
    keys = schema["$defs"][definition]["properties"]
    # retry_for is derived, never read from the file (nor is a retry block's RetrySpec: see
    # test_retry.py)
    assert list(keys) == [f.name for f in dataclasses.fields(spec) if f.name != "retry_for"]


def test_a_message_json_schema_admits_other_fields_by_default(topology):
    schema = topology.message("InventoryReserved").json_schema
    assert schema["additionalProperties"] is True
    jsonschema.validate(
        {"order_id": "o-1", "item": "widget", "quantity": 2, "colour": "red"}, schema)


def test_additional_fields_false_forbids_other_fields(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump({
        "exchanges": [{"name": "x"}],
        "queues": [{"name": "q"}],
        "bindings": [{"exchange": "x", "queue": "q", "routing_keys": ["m"]}],
        "messages": [{"name": "M", "exchange": "x", "routing_key": "m",
                      "additional_fields": False, "fields": [{"name": "a", "type": "integer"}]}],
    }))
    spec = load_topology(path).message("M")
    assert spec.additional_fields is False
    assert spec.json_schema["additionalProperties"] is False
    jsonschema.validate({"a": 1}, spec.json_schema)
    with pytest.raises(jsonschema.ValidationError, match="'b' was unexpected"):
        jsonschema.validate({"a": 1, "b": 2}, spec.json_schema)
