"""The ``policies:`` section: validation, the model, and setting policies on the broker."""
import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from nameko_topology.cli import main
from nameko_topology.exceptions import TopologyError
from nameko_topology.model import load_topology
from nameko_topology.policies import queues_pattern

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"

POLICY = {"name": "limits", "queues": ["dead_letter_queue"],
          "definition": {"max-length": 10000, "overflow": "reject-publish"}}


def with_policies(tmp_path, *policies):
    """The repository's topology with ``policies``, written to a file of its own."""
    document = yaml.safe_load(REPO_TOPOLOGY.read_text())
    document["policies"] = [copy.deepcopy(p) for p in policies]
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def problems(tmp_path, *policies):
    path = with_policies(tmp_path, *policies)
    with pytest.raises(TopologyError) as error:
        load_topology(path)
    assert str(path) in str(error.value)
    return error.value.problems


def test_a_queues_list_becomes_an_anchored_pattern(tmp_path):
    topology = load_topology(with_policies(tmp_path, POLICY, {
        "name": "ttl", "pattern": "^inventory_", "priority": 1, "definition": {"expires": 60000}}))

    limits, ttl = topology.policies["limits"], topology.policies["ttl"]
    assert limits.broker_settings == {
        "pattern": "^(?:dead_letter_queue)$", "apply-to": "queues", "priority": 0,
        "definition": {"max-length": 10000, "overflow": "reject-publish"}}
    assert (ttl.pattern, ttl.priority) == ("^inventory_", 1)


def test_queues_pattern_escapes_names():
    assert queues_pattern(["a.b", "c"]) == r"^(?:a\.b|c)$"


@pytest.mark.parametrize("policy, path, message", [
    ({**POLICY, "definition": {"max-lenght": 1}}, "policies[0].definition",
     "unknown key 'max-lenght'; allowed: message-ttl, "),
    ({**POLICY, "definition": {"max-length": "many"}}, "policies[0].definition.max-length",
     "must be an integer, not 'many'"),
    ({**POLICY, "definition": {"overflow": "explode"}}, "policies[0].definition.overflow",
     "'explode' is not one of drop-head, reject-publish, reject-publish-dlx"),
    ({**POLICY, "apply_to": "streams"}, "policies[0].apply_to", "'streams' is not one of"),
    ({"name": "p", "pattern": "^(unclosed", "definition": {"expires": 1}},
     "policies[0].pattern", "'^(unclosed' is not a valid regular expression"),
    ({"name": "p", "pattern": "^nothing_here$", "definition": {"expires": 1}},
     "policies[0].pattern", "'^nothing_here$' matches no declared queue"),
    ({"name": "p", "queues": ["nowhere"], "definition": {"expires": 1}},
     "policies[0].queues[0]", "queue 'nowhere' is not declared under queues"),
    ({"name": "p", "definition": {"expires": 1}}, "policies[0]",
     "give either pattern or queues"),
    ({"name": "p", "pattern": "x", "queues": ["dead_letter_queue"], "definition": {"expires": 1}},
     "policies[0]", "give either pattern or queues"),
    # order_placed_queue declares x-dead-letter-exchange itself
    ({"name": "p", "queues": ["order_placed_queue"],
      "definition": {"dead-letter-exchange": "elsewhere"}},
     "policies[0].definition.dead-letter-exchange",
     "queue 'order_placed_queue' sets x-dead-letter-exchange itself"),
    # a retry queue's TTL is its delay: a policy must not set another
    ({"name": "p", "pattern": r"\.retry\.", "definition": {"message-ttl": 5}},
     "policies[0].definition.message-ttl",
     "queue 'inventory_failed_queue.retry.100ms' sets x-message-ttl itself"),
])
def test_bad_policies_are_named(tmp_path, policy, path, message):
    found = problems(tmp_path, policy)
    assert any(p == path and m.startswith(message) for p, m in found), found


def test_duplicate_policy_names(tmp_path):
    assert ("policies[1].name", "'limits' is already declared by policies[0]") in problems(
        tmp_path, POLICY, POLICY)


def effective_policies(vhost):
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost.name, "name", "policy", "--formatter", "json",
         "-q"], capture_output=True, text=True, timeout=60, check=True).stdout
    return {q["name"]: q["policy"] for q in json.loads(listed)}


@pytest.mark.integration
def test_apply_sets_policies_and_puts_a_changed_one_back(vhost, tmp_path, capsys):
    path = str(with_policies(tmp_path, POLICY))
    assert main(["apply", path, "--amqp-uri", vhost.amqp_uri]) == 0
    assert "policies: 1 of 1 set: limits" in capsys.readouterr().out
    assert main(["plan", path, "--amqp-uri", vhost.amqp_uri]) == 0
    [held] = vhost.api.get(vhost.api.path("policies", vhost.name))
    assert (held["definition"], held["pattern"]) == (POLICY["definition"], "^(?:dead_letter_queue)$")
    # the broker applies it (rabbitmqctl: the management API shows it a statistics interval late)
    assert effective_policies(vhost)["dead_letter_queue"] == "limits"
    capsys.readouterr()

    # changed by hand
    vhost.api.put_policy("limits", {**held, "definition": {"max-length": 5}})
    assert main(["plan", path, "--amqp-uri", vhost.amqp_uri]) == 2
    out = capsys.readouterr().out
    assert "To change in place (apply updates them):\n  policy  limits" in out
    assert "definition.max-length  file: 10000  broker: 5" in out
    assert "definition.overflow    file: \"reject-publish\"  broker: (none)" in out

    assert main(["apply", path, "--amqp-uri", vhost.amqp_uri]) == 0
    assert "policies: 1 of 1 set: limits" in capsys.readouterr().out
    assert main(["plan", path, "--amqp-uri", vhost.amqp_uri]) == 0
    [held] = vhost.api.get(vhost.api.path("policies", vhost.name))
    assert held["definition"] == POLICY["definition"]
