"""Unit tests of the plan: a hand-built topology against broker listings in the management
API's format (no broker)."""
import copy

import pytest

from nameko_topology.export.definitions import definitions
from nameko_topology.model import (
    BindingSpec, DeadLetterSpec, ExchangeSpec, QueueSpec, RetrySpec, Topology,
)
from nameko_topology.plan import plan, render
from nameko_topology.policies import PolicySpec

VHOST = "v"


@pytest.fixture
def topology():
    """One exchange, a queue with retries after 1 s and 5 s (two retry queues), a queue
    without, one binding each, one policy."""
    return Topology(
        source="topology.yaml",
        exchanges={"jobs": ExchangeSpec("jobs"), "dlx": ExchangeSpec("dlx")},
        queues={
            "work": QueueSpec("work", dead_letter=DeadLetterSpec("dlx"),
                              retry=RetrySpec(max_attempts=3, delays=(1000, 5000))),
            "dead": QueueSpec("dead", retry=RetrySpec(max_attempts=1, delays=())),
        },
        bindings=(BindingSpec("jobs", "work", ("job.new",)), BindingSpec("dlx", "dead", ("#",))),
        messages={},
        policies={"cap": PolicySpec("cap", "^dead$", definition={"max-length": 100})},
    )


def broker_of(topology):
    """The listings the management API gives for a vhost that matches ``topology``, with
    nameko's own RPC entities and the default exchange's bindings, which plan ignores."""
    held = copy.deepcopy(definitions(topology, VHOST))
    for queue in held["queues"]:
        queue["type"] = queue["arguments"].get("x-queue-type", "classic")
    held["exchanges"] += [{"name": "", "type": "direct", "durable": True, "auto_delete": False,
                           "arguments": {}},
                          {"name": "amq.topic", "type": "topic", "durable": True,
                           "auto_delete": False, "arguments": {}},
                          {"name": "nameko-rpc", "type": "topic", "durable": True,
                           "auto_delete": False, "arguments": {}}]
    held["queues"] += [{"name": "rpc-orders", "type": "classic", "durable": True,
                        "auto_delete": False, "arguments": {}},
                       {"name": "rpc.reply-gateway-1", "type": "classic", "durable": False,
                        "auto_delete": True, "arguments": {}}]
    held["bindings"] += [
        {"source": "", "destination": "work", "destination_type": "queue",
         "routing_key": "work", "arguments": {}},
        {"source": "nameko-rpc", "destination": "rpc-orders", "destination_type": "queue",
         "routing_key": "orders.*", "arguments": {}}]
    return held


def changes(topology, broker):
    return [(c.action, c.kind, c.name, c.differences) for c in plan(topology, broker, VHOST).changes]


def test_in_sync(topology):
    result = plan(topology, broker_of(topology), VHOST)
    assert result.changes == () and not result.drifted(strict=True)
    assert render(result, "topology.yaml").endswith("in sync")


def test_retry_queues_are_declared_entities(topology):
    assert {n for n, q in topology.declared_queues.items() if q.retry_for} == {
        "work.retry.1s", "work.retry.5s"}
    broker = broker_of(topology)
    broker["queues"] = [q for q in broker["queues"] if q["name"] != "work.retry.5s"]

    [change] = plan(topology, broker, VHOST).changes
    assert (change.action, change.kind, change.name, change.note) == (
        "create", "queue", "work.retry.5s", "retry queue of work")


def test_a_retry_queue_with_another_delay_cannot_change_in_place(topology):
    broker = broker_of(topology)
    [retry] = [q for q in broker["queues"] if q["name"] == "work.retry.1s"]
    retry["arguments"]["x-message-ttl"] = 2000

    [change] = plan(topology, broker, VHOST).changes
    assert (change.action, change.name, change.differences) == (
        "replace", "work.retry.1s", (("arguments.x-message-ttl", 1000, 2000),))
    # nothing may wait in a retry queue when its parent is moved: the recipe says so
    assert any("work.retry.1s" in step for step in
               plan(topology, _with_other_work_arguments(topology), VHOST).changes[0].migration)


def _with_other_work_arguments(topology):
    broker = broker_of(topology)
    [work] = [q for q in broker["queues"] if q["name"] == "work"]
    work["arguments"]["x-max-length"] = 5
    return broker


@pytest.mark.parametrize("kind, name, expected", [
    ("exchanges", "jobs", ("create", "exchange", "jobs", ())),
    ("queues", "dead", ("create", "queue", "dead", ())),
])
def test_missing_entities(topology, kind, name, expected):
    broker = broker_of(topology)
    broker[kind] = [e for e in broker[kind] if e["name"] != name]
    assert expected in changes(topology, broker)


def test_missing_binding_is_named_with_its_routing_key(topology):
    broker = broker_of(topology)
    broker["bindings"] = [b for b in broker["bindings"] if b["destination"] != "work"
                          or b["source"] != "jobs"]
    assert changes(topology, broker) == [
        ("create", "binding", "jobs -> work [routing key 'job.new']", ())]


def test_missing_policy(topology):
    broker = broker_of(topology)
    broker["policies"] = []
    assert changes(topology, broker) == [("create", "policy", "cap", ())]


def test_differing_policy_changes_in_place(topology):
    broker = broker_of(topology)
    broker["policies"][0].update({"priority": 3, "definition": {"max-length": 5, "expires": 9}})
    assert changes(topology, broker) == [("update", "policy", "cap", (
        ("priority", 0, 3), ("definition.expires", None, 9), ("definition.max-length", 100, 5)))]


@pytest.mark.parametrize("change, differences", [
    ({"durable": False}, (("durable", True, False),)),
    ({"auto_delete": True}, (("auto_delete", False, True),)),
    ({"type": "quorum", "arguments": {"x-queue-type": "quorum",
                                      "x-dead-letter-exchange": "dlx"}},
     (("type", "classic", "quorum"),)),
    ({"arguments": {"x-dead-letter-exchange": "elsewhere", "x-max-length": 5}},
     (("arguments.x-dead-letter-exchange", "dlx", "elsewhere"),
      ("arguments.x-max-length", None, 5))),
])
def test_differing_queue_cannot_change_in_place(topology, change, differences):
    broker = broker_of(topology)
    [work] = [q for q in broker["queues"] if q["name"] == "work"]
    work.update(change)

    [found] = plan(topology, broker, VHOST).changes
    assert (found.action, found.kind, found.name, found.differences) == (
        "replace", "queue", "work", differences)
    steps = "\n".join(found.migration)
    for step in ("work.migrating", "shovel", "rabbitmqctl delete_queue -p v work",
                 "nameko-topology apply topology.yaml", "start the services again"):
        assert step in steps


def test_exchange_arguments_rabbitmq_does_not_compare_are_compared(topology):
    broker = broker_of(topology)
    [jobs] = [e for e in broker["exchanges"] if e["name"] == "jobs"]
    jobs["arguments"] = {"x-note": "by hand"}

    [found] = plan(topology, broker, VHOST).changes
    assert (found.action, found.kind, found.differences) == (
        "replace", "exchange", (("arguments.x-note", None, "by hand"),))
    assert "nameko-topology apply topology.yaml" in found.migration[-1]


def test_extra_entities_are_information_unless_strict(topology):
    broker = broker_of(topology)
    broker["exchanges"].append({"name": "old", "type": "fanout", "durable": True,
                                "auto_delete": False, "arguments": {}})
    broker["queues"].append({"name": "stray", "type": "classic", "durable": True,
                             "auto_delete": False, "arguments": {}})
    broker["bindings"].append({"source": "jobs", "destination": "stray",
                               "destination_type": "queue", "routing_key": "#",
                               "arguments": {}})
    broker["policies"].append({"name": "manual", "pattern": ".*", "apply-to": "all",
                               "priority": 0, "definition": {}})

    result = plan(topology, broker, VHOST)
    assert {(c.kind, c.name) for c in result.of("extra")} == {
        ("exchange", "old"), ("queue", "stray"), ("policy", "manual"),
        ("binding", "jobs -> stray [routing key '#']")}
    assert result.changes == tuple(result.of("extra"))
    assert not result.drifted() and result.drifted(strict=True)
    assert "On the broker, not in the file (information only):" in render(result, "f")
    assert "(drift: --strict)" in render(result, "f", strict=True)


def test_json_names_every_setting_with_both_values(topology):
    broker = _with_other_work_arguments(topology)
    document = plan(topology, broker, VHOST).as_json()
    assert document["in_sync"] is False
    [replace] = document["replace"]
    assert (replace["kind"], replace["name"], replace["differences"]) == (
        "queue", "work", [{"setting": "arguments.x-max-length", "file": None, "broker": 5}])
    assert replace["migration"]


def test_table_shows_both_values(topology):
    text = render(plan(topology, _with_other_work_arguments(topology), VHOST), "topology.yaml")
    assert "Not changeable in place (apply refuses; re-create as below):" in text
    assert "  queue  work\n      arguments.x-max-length  file: (none)  broker: 5\n      1. " in text
    assert text.endswith("drift")

