"""The ``retry:`` block: what validation refuses, and the retry queues the model derives."""
from pathlib import Path

import pytest
import yaml

from nameko_topology.exceptions import TopologyError
from nameko_topology.model import load_topology

REPO_TOPOLOGY = Path(__file__).resolve().parents[2] / "topology.yaml"


def pipeline_with(tmp_path, change):
    """The pipeline's topology with ``change(document)`` applied, loaded from a file."""
    document = yaml.safe_load(REPO_TOPOLOGY.read_text())
    change(document)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def with_retry(retry, **queue):
    def change(document):
        document["queues"][0].update(queue, retry=retry)
    return change


@pytest.mark.parametrize("change, problem", [
    (with_retry({"delays": [0]}),
     "queues[0].retry.delays[0]: a delay must be positive, not 0"),
    (with_retry({"delays": ["1s", -5]}),
     "queues[0].retry.delays[1]: a delay must be positive, not -5"),
    (with_retry({"delays": ["soon"]}),
     "queues[0].retry.delays[0]: 'soon' is not a duration"),
    (with_retry({"delays": ["1s"], "initial": "1s"}),
     "queues[0].retry: delays and initial both give the delays"),
    (with_retry({"max_attempts": 3}, type="quorum", delivery_limit=3),
     "queues[0].retry.max_attempts: max_attempts 3 can reach the queue's delivery_limit 3"),
    (lambda document: document["queues"].append({"name": "order_placed_queue.retry.100ms"}),
     "queues[0].name: its retry queue 'order_placed_queue.retry.100ms' would have the name of "
     "the queue of queues[6]"),
], ids=["zero", "negative", "not-a-duration", "two-forms", "quorum-delivery-limit", "clash"])
def test_a_bad_retry_block_fails_naming_the_file_the_entry_and_the_problem(
        tmp_path, change, problem):
    path = pipeline_with(tmp_path, change)

    with pytest.raises(TopologyError) as error:
        load_topology(path)

    assert f"{path}: {problem}" in str(error.value)


def test_each_distinct_delay_is_a_retry_queue_that_returns_to_its_queue(tmp_path):
    path = pipeline_with(tmp_path, with_retry({"max_attempts": 5, "delays": ["1s", "5s"]}))

    topology = load_topology(path)

    retry_queues = {name: spec for name, spec in topology.retry_queues.items()
                    if spec.retry_for == "order_placed_queue"}
    assert sorted(retry_queues) == ["order_placed_queue.retry.1s", "order_placed_queue.retry.5s"]
    assert retry_queues["order_placed_queue.retry.5s"].broker_arguments == {
        "x-message-ttl": 5000, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "order_placed_queue"}
    assert set(topology.declared_queues) == set(topology.queues) | set(topology.retry_queues)
    # the last delay repeats: attempts 1 -> 1s, 2, 3 and 4 -> 5s
    retry = topology.queue("order_placed_queue").retry
    assert [retry.delay_after(attempt) for attempt in (1, 2, 3, 4)] == [1000, 5000, 5000, 5000]
