"""``nameko-topology shell``: nameko's shell with the topology's helpers, on the real broker."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nameko_topology.messages import REASON_HEADER

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("nameko-topology"))


def shell(vhost, script):
    """Run ``script`` in the shell on ``vhost``; its stdout."""
    result = subprocess.run(
        [CLI, "shell", "--config", "config.yaml"], input=script, capture_output=True, text=True,
        cwd=ROOT, timeout=120, env={**os.environ, "AMQP_URI": vhost.amqp_uri})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_shell_publishes_checked_messages_and_reads_queues_and_dead_letters(
        vhost, topology, queue_depth):
    vhost.publish("dlx_exchange", "order.placed", b"not json",
                  headers={REASON_HEADER: "invalid message: body is not valid JSON"})

    out = shell(vhost, "\n".join([
        "import json",
        "n.publish('OrderPlaced', {'order_id': 'o-1', 'item': 'widget-A', 'quantity': 2})",
        "print('QUEUES', json.dumps(n.queues()))",
        "print('DEAD', json.dumps([(d['reason'], d['body'].decode()) for d in n.dead_letters()]))",
        "try:\n    n.publish('OrderPlaced', {'order_id': 'o-2', 'item': 'widget-A'})\n"
        "except Exception as exc:\n    print('REFUSED', type(exc).__name__, exc)\n",
    ]) + "\n")

    queues = json.loads(out.split("QUEUES ", 1)[1].splitlines()[0])
    assert queues["order_placed_queue"] == {"messages": 1, "consumers": 0}
    assert queues["dead_letter_queue"] == {"messages": 1, "consumers": 0}
    assert json.loads(out.split("DEAD ", 1)[1].splitlines()[0]) == [
        ["invalid message: body is not valid JSON", "not json"]]
    assert "REFUSED InvalidMessage OrderPlaced: field 'quantity' is missing" in out
    # reading dead letters removed nothing
    assert queue_depth("dead_letter_queue") == 1
    assert queue_depth("order_placed_queue") == 1


def test_the_shell_on_a_broker_it_cannot_reach_says_so_without_the_password(vhost):
    result = subprocess.run(
        [CLI, "shell", "--config", "config.yaml"], input="", capture_output=True, text=True,
        cwd=ROOT, timeout=120,
        env={**os.environ, "AMQP_URI": "amqp://guest:s3cret@127.0.0.1:5672/no_such_vhost"})
    assert result.returncode == 1
    assert "cannot reach the broker" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
