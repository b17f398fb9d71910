import copy
import json
from importlib import resources
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from nameko_topology.exceptions import TopologyError
from nameko_topology.model import load_topology

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"

VALID = {
    "exchanges": [
        {"name": "orders", "type": "topic"},
        {"name": "dlx", "type": "topic"},
    ],
    "queues": [
        {"name": "placed", "dead_letter": {"exchange": "dlx"}},
        {"name": "dead"},
    ],
    "bindings": [
        {"exchange": "orders", "queue": "placed", "routing_keys": ["order.placed"]},
        {"exchange": "dlx", "queue": "dead", "routing_keys": ["#"]},
    ],
    "messages": [
        {
            "name": "OrderPlaced",
            "exchange": "orders",
            "routing_key": "order.placed",
            "fields": [
                {"name": "order_id", "type": "string", "min_length": 1},
                {"name": "quantity", "type": "integer", "minimum": 1},
            ],
        },
    ],
}


@pytest.fixture
def document():
    return copy.deepcopy(VALID)


@pytest.fixture
def load(tmp_path):
    """Write a document (or YAML text) to a file and load it."""

    def load(document):
        path = tmp_path / "topology.yaml"
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
        return load_topology(path)

    return load


@pytest.fixture
def problems(load):
    """The problems a document is rejected for."""

    def problems(document):
        with pytest.raises(TopologyError) as error:
            load(document)
        return error.value.problems

    return problems


@pytest.fixture
def only_problem(problems):
    def only_problem(document):
        found = problems(document)
        assert len(found) == 1, found
        return found[0]

    return only_problem


def add_exchange(document, name, type):
    document["exchanges"].append({"name": name, "type": type})


def add_binding(document, exchange, queue, routing_keys=None, **extra):
    binding = {"exchange": exchange, "queue": queue, **extra}
    if routing_keys is not None:
        binding["routing_keys"] = routing_keys
    document["bindings"].append(binding)
    return len(document["bindings"]) - 1


def test_shipped_topology_is_valid():
    topology = load_topology(REPO_TOPOLOGY)
    assert set(topology.exchanges) == {"orders", "inventory", "dlx_exchange"}


def test_valid_document_loads(load, document):
    assert load(document).queue("placed").dead_letter.exchange == "dlx"


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = json.loads(
        resources.files("nameko_topology").joinpath("schema.json").read_text()
    )
    Draft202012Validator.check_schema(schema)


# -- the file as a whole ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "# nothing\n", "- orders\n", "just a string\n"])
def test_document_must_be_a_mapping(only_problem, text):
    assert only_problem(text) == (
        "", "the file must be a mapping with exchanges, queues, bindings, messages"
    )


def test_error_names_the_file_and_every_path(tmp_path, document):
    document["queues"][0]["durabel"] = True
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(TopologyError) as error:
        load_topology(path)
    assert error.value.source == str(path)
    assert f"{path}: queues[0]: unknown key 'durabel'" in str(error.value)


def test_unreadable_file_is_named(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(TopologyError, match="cannot read the file") as error:
        load_topology(missing)
    assert str(missing) in str(error.value)


def test_invalid_yaml_is_named(problems):
    [(path, message)] = problems("queues: [unclosed\n")
    assert path == ""
    assert "not valid YAML" in message


def test_all_problems_are_reported_at_once(problems, document):
    document["queues"][1]["durabel"] = True  # schema
    document["exchanges"][0]["type"] = "fanoutt"  # schema
    document["queues"].append({"name": "placed"})  # duplicate
    add_binding(document, "nowhere", "placed", ["x"])  # undeclared exchange
    document["bindings"][1]["routing_keys"] = ["a..b"]  # topic key syntax
    document["messages"][0]["fields"][0]["max_length"] = 0  # min_length > max_length
    found = problems(document)
    assert [path for path, _ in found] == [
        "exchanges[0].type",
        "queues[1]",
        "queues[2].name",
        "bindings[2].exchange",
        "bindings[1].routing_keys[0]",
        "messages[0].fields[0].min_length",
    ]


def test_entries_the_schema_rejects_still_declare_their_names(only_problem, document):
    document["queues"][1]["durabel"] = True
    # the binding to 'dead' must not be reported as naming an undeclared queue
    assert only_problem(document)[0] == "queues[1]"


# -- schema ----------------------------------------------------------------------------------

def test_unknown_key(only_problem, document):
    document["queues"][0]["durabel"] = True
    path, message = only_problem(document)
    assert path == "queues[0]"
    assert message.startswith("unknown key 'durabel'; allowed: name, durable, type, ")


def test_unknown_top_level_key(only_problem, document):
    document["exchange"] = []
    assert only_problem(document) == (
        "", "unknown key 'exchange'; allowed: exchanges, queues, bindings, messages, policies"
    )


def test_missing_required_keys(problems, document):
    document["messages"].append({"exchange": "orders"})
    assert problems(document) == [
        ("messages[1]", "missing required key 'name'"),
        ("messages[1]", "missing required key 'routing_key'"),
    ]


def test_not_one_of_the_allowed_values(only_problem, document):
    document["exchanges"][0]["type"] = "fanoutt"
    assert only_problem(document) == (
        "exchanges[0].type", "'fanoutt' is not one of direct, topic, fanout, headers"
    )


def test_wrong_type_in_nested_object(only_problem, document):
    document["queues"][0]["dead_letter"]["exchange"] = 5
    assert only_problem(document) == ("queues[0].dead_letter.exchange", "must be a string, not 5")


def test_wrong_boolean(only_problem, document):
    document["queues"][0]["durable"] = "yes"
    assert only_problem(document) == ("queues[0].durable", "must be true or false, not 'yes'")


def test_section_must_be_a_list(problems, document):
    document["queues"] = None  # "queues:" with nothing after it
    assert problems(document) == [
        ("queues", "must be a list, not None"),
        ("bindings[0].queue", "queue 'placed' is not declared under queues"),
        ("bindings[1].queue", "queue 'dead' is not declared under queues"),
    ]


@pytest.mark.parametrize("option, value, minimum", [
    ("message_ttl", -1, 0),
    ("delivery_limit", -1, 0),
    ("retry", {"max_attempts": 0}, 1),
    ("max_message_bytes", 0, 1),
])
def test_below_minimum(only_problem, document, option, value, minimum):
    document["queues"][0][option] = value
    document["queues"][0]["type"] = "quorum"
    path, message = only_problem(document)
    assert path.startswith(f"queues[0].{option}")
    assert message.startswith(f"must be at least {minimum}")


def test_empty_name(only_problem, document):
    # "" is the default exchange, which cannot be declared
    add_exchange(document, "", "topic")
    assert only_problem(document) == ("exchanges[2].name", "must not be empty")


def test_name_longer_than_255(only_problem, document):
    document["queues"].append({"name": "q" * 256})
    assert only_problem(document) == ("queues[2].name", "must be at most 255 characters long")


@pytest.mark.parametrize("section", ["exchanges", "queues"])
def test_name_longer_than_255_bytes(only_problem, document, section):
    # AMQP carries names as short strings: 255 bytes, which the schema cannot count
    name = "é" * 128  # 128 characters, 256 bytes
    if section == "exchanges":
        add_exchange(document, name, "topic")
    else:
        document["queues"].append({"name": name})
    assert only_problem(document) == (
        f"{section}[2].name", "names are at most 255 bytes long, this one is 256"
    )


def test_empty_routing_keys(only_problem, document):
    document["bindings"][0]["routing_keys"] = []
    assert only_problem(document) == ("bindings[0].routing_keys", "must not be an empty list")


# -- duplicates ------------------------------------------------------------------------------

@pytest.mark.parametrize("section", ["exchanges", "queues", "messages"])
def test_duplicate_names(only_problem, document, section):
    document[section].append(copy.deepcopy(document[section][0]))
    if section == "messages":
        document[section][-1]["routing_key"] = "order.other"
        document["bindings"][0]["routing_keys"].append("order.other")
    name = document[section][0]["name"]
    index = len(document[section]) - 1
    assert only_problem(document) == (
        f"{section}[{index}].name", f"{name!r} is already declared by {section}[0]"
    )


def test_duplicate_message_route(only_problem, document):
    document["messages"].append(
        {"name": "OrderPlacedAgain", "exchange": "orders", "routing_key": "order.placed"}
    )
    path, message = only_problem(document)
    assert path == "messages[1].routing_key"
    assert message.startswith(
        "messages[0] is already published on exchange 'orders' with routing key 'order.placed'"
    )


def test_duplicate_field(only_problem, document):
    document["messages"][0]["fields"].append({"name": "order_id", "type": "string"})
    assert only_problem(document) == (
        "messages[0].fields[2].name", "'order_id' is already declared by fields[0]"
    )


# -- references ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, path, message", [
    (lambda d: d["bindings"][1].update(exchange="nowhere"),
     "bindings[1].exchange", "exchange 'nowhere' is not declared under exchanges"),
    (lambda d: d["bindings"][0].update(queue="nowhere"),
     "bindings[0].queue", "queue 'nowhere' is not declared under queues"),
    (lambda d: d["queues"][0]["dead_letter"].update(exchange="nowhere"),
     "queues[0].dead_letter.exchange", "exchange 'nowhere' is not declared under exchanges"),
    (lambda d: d["messages"][0].update(exchange="nowhere"),
     "messages[0].exchange", "exchange 'nowhere' is not declared under exchanges"),
])
def test_undeclared_references(only_problem, document, change, path, message):
    change(document)
    assert only_problem(document) == (path, message)


def test_reserved_exchange_name(only_problem, document):
    add_exchange(document, "amq.mine", "topic")
    path, message = only_problem(document)
    assert path == "exchanges[2].name"
    assert "reserved by RabbitMQ" in message


# -- queue types -----------------------------------------------------------------------------

def test_quorum_queue_must_be_durable(only_problem, document):
    document["queues"][1].update(type="quorum", durable=False)
    path, message = only_problem(document)
    assert path == "queues[1].durable"
    assert "quorum queues are always durable" in message


def test_delivery_limit_needs_a_quorum_queue(only_problem, document):
    document["queues"][1]["delivery_limit"] = 5
    path, message = only_problem(document)
    assert path == "queues[1].delivery_limit"
    assert "only applies to quorum queues" in message


def test_quorum_queue_with_delivery_limit_is_valid(load, document):
    document["queues"][1].update(type="quorum", delivery_limit=5)
    assert load(document).queue("dead").delivery_limit == 5


def test_at_least_once_dead_lettering_needs_reject_publish(only_problem, document):
    document["queues"][0].update(type="quorum", dead_letter={"exchange": "dlx",
                                                             "strategy": "at-least-once"})
    path, message = only_problem(document)
    assert path == "queues[0].overflow"
    assert "needs overflow: reject-publish" in message


def test_dead_letter_strategy_needs_a_quorum_queue(only_problem, document):
    document["queues"][0].update(overflow="reject-publish", dead_letter={
        "exchange": "dlx", "strategy": "at-least-once"})
    path, message = only_problem(document)
    assert path == "queues[0].dead_letter.strategy"
    assert "only applies to quorum queues" in message


def test_at_least_once_dead_lettering_is_declared(load, document):
    document["queues"][0].update(type="quorum", overflow="reject-publish", dead_letter={
        "exchange": "dlx", "strategy": "at-least-once"})
    assert load(document).queue("placed").broker_arguments == {
        "x-queue-type": "quorum", "x-dead-letter-exchange": "dlx",
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def test_the_quorum_topology_names_what_the_classic_one_does():
    classic = load_topology(REPO_TOPOLOGY)
    quorum = load_topology(REPO_TOPOLOGY.with_name("topology.quorum.yaml"))
    assert (classic.exchanges, classic.bindings, classic.messages) == (
        quorum.exchanges, quorum.bindings, quorum.messages)
    assert quorum.queues.keys() == classic.queues.keys()
    assert {spec.type for spec in quorum.queues.values()} == {"quorum"}
    for spec in quorum.queues.values():
        if spec.dead_letter is not None:
            assert spec.dead_letter.strategy == "at-least-once"
            assert spec.delivery_limit > 1


# -- routing keys ----------------------------------------------------------------------------

@pytest.mark.parametrize("key, fragment", [
    ("order.*ed", "'*' and '#' must be whole words"),
    ("order#", "'*' and '#' must be whole words"),
    ("a..b", "has an empty word"),
    (".a", "has an empty word"),
    ("", "has an empty word"),
])
def test_invalid_topic_binding_key(only_problem, document, key, fragment):
    document["bindings"][0]["routing_keys"] = ["order.placed", key]
    path, message = only_problem(document)
    assert path == "bindings[0].routing_keys[1]"
    assert fragment in message


def test_topic_wildcards_are_valid_binding_keys(load, document):
    document["bindings"][0]["routing_keys"] = ["order.*", "#.placed", "*.placed.#"]
    assert len(load(document).kombu_queue("placed").bindings) == 3


def test_topic_binding_needs_routing_keys(only_problem, document):
    del document["bindings"][0]["routing_keys"]
    path, message = only_problem(document)
    assert path == "bindings[0]"
    assert message.startswith("missing required key 'routing_keys'")


def test_routing_key_longer_than_255_bytes(only_problem, document):
    document["bindings"][0]["routing_keys"] = ["é" * 128]  # 128 characters, 256 bytes
    assert only_problem(document) == (
        "bindings[0].routing_keys[0]", "routing keys are at most 255 bytes long, this one is 256"
    )


def test_wildcard_on_direct_exchange(only_problem, document):
    add_exchange(document, "tasks", "direct")
    index = add_binding(document, "tasks", "placed", ["task", "task.*"])
    path, message = only_problem(document)
    assert path == f"bindings[{index}].routing_keys[1]"
    assert "wildcards have no meaning on a direct exchange" in message


@pytest.mark.parametrize("exchange_type, where, expected", [
    ("fanout", ".routing_keys[0]", "fanout exchanges ignore routing keys; omit routing_keys"),
    ("headers", ".routing_keys", "omit routing_keys"),
])
def test_routing_keys_on_exchanges_that_ignore_them(only_problem, document, exchange_type,
                                                     where, expected):
    add_exchange(document, "ignoring", exchange_type)
    index = add_binding(document, "ignoring", "placed", ["order.placed"])
    path, message = only_problem(document)
    assert path == f"bindings[{index}]{where}"
    assert expected in message


def test_fanout_binding_without_routing_keys_is_valid(load, document):
    add_exchange(document, "broadcast", "fanout")
    add_binding(document, "broadcast", "placed")
    assert load(document).bindings[-1].routing_keys == ("",)


def test_invalid_x_match(only_problem, document):
    add_exchange(document, "by_header", "headers")
    index = add_binding(document, "by_header", "placed", arguments={"x-match": "some"})
    assert only_problem(document) == (
        f"bindings[{index}].arguments.x-match",
        "'some' is not one of all, any, all-with-x, any-with-x",
    )


def test_headers_binding_is_valid(load, document):
    add_exchange(document, "by_header", "headers")
    add_binding(document, "by_header", "placed", arguments={"x-match": "any", "kind": "pdf"})
    assert load(document).bindings[-1].arguments == {"x-match": "any", "kind": "pdf"}


@pytest.mark.parametrize("key, fragment", [
    ("order.*", "contains the wildcard '*'"),
    ("#", "contains the wildcard '#'"),
    ("order..placed", "has an empty word"),
])
def test_message_routing_key_must_be_concrete(only_problem, document, key, fragment):
    document["messages"][0]["routing_key"] = key
    path, message = only_problem(document)
    assert path == "messages[0].routing_key"
    assert fragment in message


# -- dead-letter loops -----------------------------------------------------------------------

LOOP = "dead-lettered messages would route back into 'placed' itself through binding"


@pytest.mark.parametrize("dlx_key", ["#", "order.placed", "order.failed"])
def test_dlx_binding_back_to_the_queue_loops(only_problem, document, dlx_key):
    # without a dead-letter routing key messages keep theirs, so those that came through the
    # binding take it again
    index = add_binding(document, "dlx", "placed", [dlx_key])
    assert only_problem(document) == (
        "queues[0].dead_letter.exchange",
        f"{LOOP} bindings[{index}] ({dlx_key!r}), an endless loop",
    )


@pytest.mark.parametrize("dlx_type, dlx_key, loops", [
    ("topic", "dead.*", True),
    ("topic", "#", True),
    ("topic", "dead.#", True),
    ("topic", "*.placed", True),
    ("topic", "order.#", False),
    ("topic", "*", False),
    ("topic", "dead.placed.*", False),
    ("direct", "dead.placed", True),
    ("direct", "dead", False),
])
def test_dead_letter_routing_key_decides_the_loop(
    load, problems, document, dlx_type, dlx_key, loops
):
    document["exchanges"][1]["type"] = dlx_type
    document["bindings"][1]["routing_keys"] = ["dead"]
    document["queues"][0]["dead_letter"]["routing_key"] = "dead.placed"
    add_binding(document, "dlx", "placed", [dlx_key])
    if loops:
        assert problems(document) == [(
            "queues[0].dead_letter.exchange",
            f"{LOOP} bindings[2] ({dlx_key!r}), an endless loop",
        )]
    else:
        assert load(document)


@pytest.mark.parametrize("dlx_type", ["fanout", "headers"])
def test_fanout_and_headers_dlx_always_route_back(only_problem, document, dlx_type):
    document["exchanges"][1]["type"] = dlx_type
    del document["bindings"][1]["routing_keys"]
    document["queues"][0]["dead_letter"]["routing_key"] = "dead.placed"
    add_binding(document, "dlx", "placed")
    path, message = only_problem(document)
    assert path == "queues[0].dead_letter.exchange"
    assert message.startswith(f"{LOOP} bindings[2]")


def test_dlx_binding_to_another_queue_is_valid(load, document):
    # VALID itself: 'placed' dead-letters to 'dlx', which binds 'dead' with '#'
    assert load(document)


# the queues of VALID: placed (from orders with 'order.placed', DLX dlx) and dead (from dlx
# with '#'); making dead dead-letter to orders closes placed -> dead -> placed
CYCLE = "dead-lettered messages would route back into 'placed' through other queues"


@pytest.fixture
def check_cycle(load, problems):
    """Assert that a document is refused for placed -> dead -> placed alone, or that it loads."""

    def check_cycle(document, loops):
        if loops:
            [(path, message)] = problems(document)
            assert path == "queues[0].dead_letter.exchange"
            assert message.startswith(f"{CYCLE}: placed -> dead -> placed")
        else:
            assert load(document)

    return check_cycle


def test_dead_letter_cycle_through_another_queue(only_problem, document):
    document["queues"][1]["dead_letter"] = {"exchange": "orders"}
    # reported once, at the first queue, not again from 'dead'
    assert only_problem(document) == (
        "queues[0].dead_letter.exchange",
        f"{CYCLE}: placed -> dead -> placed (through bindings[1] ('#'), "
        f"bindings[0] ('order.placed')), an endless loop",
    )


def test_dead_letter_cycle_through_three_queues_and_routing_keys(only_problem, document):
    add_exchange(document, "retry", "direct")
    document["queues"][1]["dead_letter"] = {"exchange": "retry", "routing_key": "again"}
    document["queues"].append(
        {"name": "parked", "dead_letter": {"exchange": "orders", "routing_key": "order.placed"}})
    add_binding(document, "retry", "parked", ["again"])
    assert only_problem(document) == (
        "queues[0].dead_letter.exchange",
        f"{CYCLE}: placed -> dead -> parked -> placed (through bindings[1] ('#'), "
        f"bindings[2] ('again'), bindings[0] ('order.placed')), an endless loop",
    )


@pytest.mark.parametrize("dead_letter_key, loops", [
    ("order.placed", True),
    ("order.dead", False),  # orders routes it nowhere
])
def test_dead_letter_routing_key_decides_a_cycle(check_cycle, document, dead_letter_key, loops):
    document["queues"][1]["dead_letter"] = {"exchange": "orders", "routing_key": dead_letter_key}
    check_cycle(document, loops)


@pytest.mark.parametrize("dlx_type, dlx_key, back_key, loops", [
    ("topic", "order.*", "order.placed", True),
    ("topic", "order.*", "*.placed", True),
    ("topic", "order.#", "#.placed.#", True),
    ("topic", "*.*", "#.placed.late", True),  # 'placed.late'
    ("topic", "*.*", "*.placed.#.late", False),  # at least three words
    ("topic", "order.*", "invoice.placed", False),
    ("topic", "order.*", "order.placed.late", False),
    ("direct", "order.placed", "order.*", True),
    ("direct", "order.paid", "order.placed", False),
    ("fanout", None, "invoice.placed", True),
])
def test_a_cycle_needs_one_key_that_every_binding_on_it_routes(
    check_cycle, document, dlx_type, dlx_key, back_key, loops
):
    # without dead-letter routing keys a message keeps its own key all the way round
    document["exchanges"][1]["type"] = dlx_type
    if dlx_key is None:
        del document["bindings"][1]["routing_keys"]
    else:
        document["bindings"][1]["routing_keys"] = [dlx_key]
    document["bindings"][0]["routing_keys"] = [back_key]
    document["queues"][1]["dead_letter"] = {"exchange": "orders"}
    document["messages"].clear()  # the cycle is the point, not whether OrderPlaced reaches it
    check_cycle(document, loops)


@pytest.mark.parametrize("to_dead", ["order.placed", "order.paid"])
def test_a_cycle_through_the_key_a_dead_letter_routing_key_gives(
    load, problems, document, to_dead
):
    # placed keeps a message's key, dead re-keys it to 'order.placed' and sends it back to
    # placed; it circles if placed's DLX routes that key to dead again
    add_exchange(document, "other", "topic")
    document["queues"][0]["dead_letter"] = {"exchange": "other"}
    document["queues"][1]["dead_letter"] = {"exchange": "orders", "routing_key": "order.placed"}
    add_binding(document, "other", "dead", [to_dead])
    if to_dead == "order.placed":
        assert problems(document) == [(
            "queues[0].dead_letter.exchange",
            f"{CYCLE}: placed -> dead -> placed (through bindings[2] ('order.placed'), "
            f"bindings[0] ('order.placed')), an endless loop",
        )]
    else:
        assert load(document)


def test_a_queue_that_only_feeds_a_loop_is_not_reported(only_problem, document):
    # placed's rejects reach dead, which loops on itself; placed is not part of the loop
    document["queues"][1]["dead_letter"] = {"exchange": "dlx"}
    assert only_problem(document) == (
        "queues[1].dead_letter.exchange",
        "dead-lettered messages would route back into 'dead' itself through binding "
        "bindings[1] ('#'), an endless loop",
    )


def test_every_cycle_is_reported(problems, document):
    document["queues"][1]["dead_letter"] = {"exchange": "orders"}
    document["queues"].append({"name": "held", "dead_letter": {"exchange": "orders"}})
    add_binding(document, "dlx", "held", ["order.*"])
    # placed -> dead -> placed, and held -> placed -> held; placed -> held -> placed is the
    # second one again
    assert [path for path, _ in problems(document)] == [
        "queues[0].dead_letter.exchange", "queues[2].dead_letter.exchange",
    ]


def test_dead_letter_routing_key_must_be_concrete(only_problem, document):
    document["queues"][0]["dead_letter"]["routing_key"] = "dead.*"
    path, message = only_problem(document)
    assert path == "queues[0].dead_letter.routing_key"
    assert "contains the wildcard '*'" in message


# -- message fields --------------------------------------------------------------------------

@pytest.mark.parametrize("field, path, message", [
    ({"name": "f", "type": "string", "min_length": 5, "max_length": 2},
     "min_length", "min_length 5 is greater than max_length 2"),
    ({"name": "f", "type": "number", "minimum": 1.5, "maximum": 1},
     "minimum", "minimum 1.5 is greater than maximum 1"),
    ({"name": "f", "type": "integer", "max_length": 2},
     "max_length", "max_length only applies to string fields, not to integer fields"),
    ({"name": "f", "type": "string", "minimum": 0},
     "minimum", "minimum only applies to integer and number fields, not to string fields"),
])
def test_field_bounds(only_problem, document, field, path, message):
    document["messages"][0]["fields"].append(field)
    assert only_problem(document) == (f"messages[0].fields[2].{path}", message)


@pytest.mark.parametrize("field, message", [
    ({"name": "f", "type": "integer", "pattern": "^[0-9]+$"},
     "pattern only applies to string fields, not to integer fields"),
    ({"name": "f", "type": "string", "pattern": "[a-"},
     "'[a-' is not a valid regular expression: unterminated character set at position 0"),
    # fastjsonschema makes every unescaped $ the end of the string, inside [...] too
    ({"name": "f", "type": "string", "pattern": "[$]"},
     "'[$]' is not a valid regular expression: bad escape \\Z at position 1"),
])
def test_field_patterns(only_problem, document, field, message):
    document["messages"][0]["fields"].append(field)
    assert only_problem(document) == ("messages[0].fields[2].pattern", message)


def test_a_pattern_must_be_a_string(only_problem, document):
    document["messages"][0]["fields"][0]["pattern"] = 5
    assert only_problem(document) == ("messages[0].fields[0].pattern", "must be a string, not 5")


def test_a_string_field_with_a_pattern_is_valid(load, document):
    document["messages"][0]["fields"][0]["pattern"] = r"^[a-z]+\$?$"
    assert load(document).message("OrderPlaced").fields[0].pattern == r"^[a-z]+\$?$"


# -- messages no binding routes --------------------------------------------------------------

EXAMPLE_TOPOLOGY = REPO_TOPOLOGY.parent / "examples" / "shipping" / "topology.yaml"
NO_ROUTE = ("but no binding routes it to a queue; its mandatory publishes would come back "
            "unrouted and be retried for ever")


def test_the_example_topology_is_valid():
    assert set(load_topology(EXAMPLE_TOPOLOGY).messages) == {
        "InventoryReserved", "ShipmentScheduled"}


def route_order_placed(document, exchange_type, routing_keys, **binding):
    """OrderPlaced published on an ``exchange_type`` exchange whose only binding is given."""
    document["exchanges"][0]["type"] = exchange_type
    document["bindings"][0] = {"exchange": "orders", "queue": "placed", **binding}
    if routing_keys is not None:
        document["bindings"][0]["routing_keys"] = routing_keys


@pytest.mark.parametrize("exchange_type, routing_keys, binding", [
    ("topic", ["order.placed"], {}),
    ("topic", ["order.*"], {}),
    ("topic", ["*.placed"], {}),
    ("topic", ["#"], {}),
    ("topic", ["order.#"], {}),
    ("topic", ["#.placed.#"], {}),
    ("topic", ["order.paid", "order.placed"], {}),  # one key of several
    ("direct", ["order.placed"], {}),
    ("fanout", None, {}),
    # which headers a message will carry is not in the file: any binding may route it
    ("headers", None, {"arguments": {"x-match": "all", "kind": "nothing-sends-this"}}),
])
def test_a_message_a_binding_routes_is_valid(load, document, exchange_type, routing_keys,
                                             binding):
    route_order_placed(document, exchange_type, routing_keys, **binding)
    assert load(document).message("OrderPlaced").exchange == "orders"


@pytest.mark.parametrize("exchange_type, routing_keys", [
    ("topic", ["order.paid"]),
    ("topic", ["order"]),
    ("topic", ["*"]),
    ("topic", ["order.*.*"]),
    ("topic", ["order.placed.#.late"]),
    ("topic", ["#.paid"]),
    ("direct", ["order.placed.late"]),
])
def test_a_message_no_binding_routes_is_refused(problems, document, exchange_type,
                                                routing_keys):
    route_order_placed(document, exchange_type, routing_keys)
    assert problems(document) == [(
        "messages[0]", f"'OrderPlaced' is published on {exchange_type} exchange 'orders' with "
                       f"routing key 'order.placed', {NO_ROUTE}")]


@pytest.mark.parametrize("exchange_type", ["topic", "direct", "fanout", "headers"])
def test_a_message_on_an_exchange_without_bindings_is_refused(only_problem, document,
                                                              exchange_type):
    document["exchanges"][0]["type"] = exchange_type
    del document["bindings"][0]
    assert only_problem(document) == (
        "messages[0]", f"'OrderPlaced' is published on {exchange_type} exchange 'orders' with "
                       f"routing key 'order.placed', {NO_ROUTE}")


def test_a_binding_of_another_exchange_does_not_route_a_message(only_problem, document):
    add_exchange(document, "elsewhere", "topic")
    document["bindings"][0]["exchange"] = "elsewhere"
    assert only_problem(document) == (
        "messages[0]", f"'OrderPlaced' is published on topic exchange 'orders' with routing key "
                       f"'order.placed', {NO_ROUTE}")


def test_every_message_no_binding_routes_is_reported(problems, document):
    document["messages"].append(
        {"name": "OrderPaid", "exchange": "orders", "routing_key": "order.paid"})
    document["messages"].append(
        {"name": "OrderShipped", "exchange": "orders", "routing_key": "order.shipped"})
    assert [path for path, _ in problems(document)] == ["messages[1]", "messages[2]"]


@pytest.mark.parametrize("binding", [
    {"routing_keys": "order.placed"},  # the schema refuses it
    {"routing_keys": ["order..placed"]},  # the binding-key check refuses it
    {},  # a topic binding without routing keys
])
def test_an_exchange_with_a_faulty_binding_is_not_also_reported_as_routing_nothing(
        only_problem, document, binding):
    # what the binding would route, once fixed, is a guess
    document["bindings"][0] = {"exchange": "orders", "queue": "placed", **binding}
    path, _ = only_problem(document)
    assert path.startswith("bindings[0]")


def test_additional_fields_must_be_true_or_false(only_problem, document):
    document["messages"][0]["additional_fields"] = "no"
    assert only_problem(document) == (
        "messages[0].additional_fields", "must be true or false, not 'no'")
